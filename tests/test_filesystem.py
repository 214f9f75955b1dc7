"""File-system faults: one `error: <path>: <why>` line and exit 2, `~` expanded, no merging
of datasets, and no half-written dataset left by an interrupted import."""

import os
import subprocess
import sys

import pytest

from recbole_gtc.prepare import mmrec
from recbole_gtc.prepare.__main__ import main as prepare_main
from recbole_gtc.prepare.synthetic import build_synthetic
from recbole_gtc.utils.utils import REPO_ROOT

RUNNER = os.path.join(REPO_ROOT, "run_recbole_gtc.py")


def _runner(cwd, *args, env=None):
    return subprocess.run([sys.executable, RUNNER, "--model=BPR", "--dataset=synth-mm", "--epochs=1", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _one_error(out, fragment):
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], out.stderr[-2000:]
    assert "General Hyper Parameters" not in out.stderr  # the error came before the configuration dump


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: (tmp / "f").write_text("x") and str(tmp / "f"), "checkpoint_dir is a file, not a folder"),
    (lambda tmp: str(tmp / ("a" * 300)), "cannot create checkpoint_dir (File name too long)"),
    (lambda tmp: "/proc/no-such-folder/x", "cannot create checkpoint_dir"),
])
def test_bad_checkpoint_dir_is_one_line(tmp_path, make, fragment):
    _one_error(_runner(tmp_path, f"--checkpoint_dir={make(tmp_path)}"), fragment)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write a read-only folder")
def test_read_only_checkpoint_dir_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    _one_error(_runner(tmp_path, f"--checkpoint_dir={folder}"), "not writable")


def test_tilde_and_variables_are_expanded(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"), RUNS=str(tmp_path / "runs"))
    out = _runner(tmp_path, "--checkpoint_dir=~/ck", "--graph_cache_dir=$RUNS/cache", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.listdir(tmp_path / "home" / "ck")
    assert not os.path.exists(tmp_path / "~") and not os.path.exists(tmp_path / "$RUNS")


def test_prepare_refuses_a_non_empty_folder_and_force_replaces(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["synthetic", "--dataset", "d", "--preset", "tiny", "--out", str(out)]
    assert prepare_main(args) == 0
    (out / "stray.txt").write_text("not part of the dataset")
    assert prepare_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out}: output folder is not empty (use --force to replace it)"]
    assert (out / "stray.txt").exists()  # refused: nothing touched
    assert prepare_main(args + ["--force"]) == 0
    assert not (out / "stray.txt").exists()  # replaced, not merged
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_main(["synthetic", "--dataset", "e", "--preset", "tiny", "--out", str(empty)]) == 0


def test_prepare_output_is_a_file(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("x")
    assert prepare_main(["synthetic", "--dataset", "d", "--preset", "tiny", "--out", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {target}: output folder is a file, not a folder"


def test_an_interrupted_import_leaves_nothing_that_loads(tmp_path, monkeypatch):
    def dying_yaml(path, *args):
        raise KeyboardInterrupt  # stopped after the split and feature files, before the YAML

    monkeypatch.setattr(mmrec, "_write_yaml", dying_yaml)
    with pytest.raises(KeyboardInterrupt):
        build_synthetic("d", preset="tiny", out_dir=str(tmp_path / "d"), quiet=True)
    assert not (tmp_path / "d").exists()
    assert os.listdir(tmp_path) == []  # no partial folder left behind either


def test_import_writes_through_a_temporary_sibling(tmp_path, monkeypatch):
    seen = []
    real = mmrec._write_yaml

    def spy(path, *args):
        seen.append(path.parent.name)
        assert not (tmp_path / "d").exists()  # the real name appears only when complete
        return real(path, *args)

    monkeypatch.setattr(mmrec, "_write_yaml", spy)
    build_synthetic("d", preset="tiny", out_dir=str(tmp_path / "d"), quiet=True)
    assert seen and seen[0].startswith(".d.partial-")
    assert sorted(os.listdir(tmp_path)) == ["d"] and (tmp_path / "d" / "d.yaml").exists()
