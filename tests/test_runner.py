"""run_recbole_gtc.py end to end, as a user runs it."""

import os
import re
import subprocess
import sys

import pytest

from recbole_gtc.utils.utils import REPO_ROOT

RUNNER = os.path.join(REPO_ROOT, "run_recbole_gtc.py")


def run(tmp_path, *args, timeout=600):
    return subprocess.run(
        [sys.executable, RUNNER, *args, "--use_gpu=False", f"--checkpoint_dir={tmp_path / 'saved'}"],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
    )


def _summary(stdout, model):
    match = re.search(rf"SUMMARY model={model} dataset=synth-mm protocol=mmrec test recall@20=([0-9.]+) ndcg@20=([0-9.]+)", stdout)
    assert match, stdout[-2000:]
    return float(match.group(1)), float(match.group(2))


def test_baselines_on_synth_mm_with_comparison_table(tmp_path):
    out = run(tmp_path, "--model=BPR,LightGCN", "--dataset=synth-mm", "--epochs=2")
    assert out.returncode == 0, out.stderr[-3000:]
    for model in ("BPR", "LightGCN"):
        recall, ndcg = _summary(out.stdout, model)
        assert 0 < recall <= 1 and 0 < ndcg <= 1
    for model in ("BPR", "LightGCN"):  # two epochs: the time is the second's alone (median = min = max)
        assert re.search(rf"^\| {model} \| 2 \| (\d+\.\d{{3}}) \(\1-\1\) \|", out.stdout, re.M), out.stdout
    assert "test: {'recall@5'" in out.stdout and "best valid: {" in out.stdout
    written = re.findall(r"^written: (\S+/run\.json) ", out.stdout, re.M)
    assert len(written) == 2 and all(os.path.isfile(path) for path in written)


def test_same_seed_same_numbers(tmp_path):
    first = run(tmp_path, "--model=BPR", "--dataset=synth-mm", "--epochs=2")
    second = run(tmp_path, "--model=BPR", "--dataset=synth-mm", "--epochs=2")
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    assert _summary(first.stdout, "BPR") == _summary(second.stdout, "BPR")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=GTC", "--dataset=baby"], "python -m recbole_gtc.prepare mmrec SRC --dataset baby"),
        (["--model=NoSuchModel", "--dataset=synth-mm"], "unknown model 'NoSuchModel'"),
        (["--model=BPR,Caser", "--dataset=synth-mm"], "Caser is a sequential model"),
        (["--model=BPR", "--dataset=synth-mm", "--config_files=missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    out = run(tmp_path, *args, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
    assert "SUMMARY" not in out.stdout  # nothing trained before the error


def test_malformed_override_is_rejected(tmp_path):
    out = run(tmp_path, "--model=BPR", "--dataset=synth-mm", "--epochs", "2", timeout=60)
    assert out.returncode == 2 and "--key=value" in out.stderr and "Traceback" not in out.stderr


def test_epoch_time_leaves_out_the_warm_up_epoch():
    """The first epoch pays one-off costs: two epochs report the second, one epoch reports itself."""
    from recbole_gtc.quick_start.quick_start import comparison_table, seconds_per_epoch

    assert seconds_per_epoch([12.9, 1.9]) == 1.9  # the upper median of both was the warm-up's 12.9
    assert seconds_per_epoch([12.9, 2.0, 1.0, 3.0]) == 2.0
    assert seconds_per_epoch([1.0, 4.0, 2.0]) == 3.0  # the median of an even count is the midpoint
    assert seconds_per_epoch([7.5]) == 7.5
    assert seconds_per_epoch([]) is None  # e.g. RecBole's TraditionalTrainer times nothing
    row = {"model": "M", "epochs": 3, "epoch_seconds": [12.9, 1.9, 2.5], "test_result": {}, "best_valid_result": {}}
    untimed = dict(row, model="EASE", epochs=1, epoch_seconds=[])
    table = comparison_table([row, untimed], metrics=("recall@20",))
    assert "| M | 3 | 2.200 (1.900-2.500) |" in table and "| EASE | 1 | - |" in table


def _help(monkeypatch, *argv):
    import torch

    from recbole_gtc.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        code = main([*argv, "--help"])  # --recommend's parser returns the status
    except SystemExit as done:  # the training parser exits, as argparse does
        code = done.code
    assert code == 0


MARKUP = re.compile(r"``|:(?:func|mod|class|meth|data|attr):")


def test_help_lists_every_model_every_mode_and_no_markup(monkeypatch, capsys):
    _help(monkeypatch)
    text = capsys.readouterr().out
    assert not MARKUP.search(text), MARKUP.search(text)
    model_help = text.split("--model MODEL, -m MODEL", 1)[1].split("--dataset")[0]
    listed = set(re.findall(r"\w+", model_help))
    assert {"GTC", "DRAGON", "FREEDOM", "LGMRec", "VBPR", "BPR", "LightGCN", "NGCF", "SGL", "ItemKNN", "EASE"} <= listed
    for option in ("--checkpoint PATH", "--users U1,U2", "--topk K", "--out FILE", "--data_path DIR", "--recommend",
                   "--seeds", "--tune", "--nproc", "python -m recbole_gtc.prepare --help"):
        assert option in text, option
    for key in ("--show_progress=...", "--state=..."):
        assert re.search(rf"^  {re.escape(key)} +\S", text, re.M), key
    (use_gpu,) = [line for line in text.splitlines() if line.startswith("  --use_gpu=")]
    assert "here: False" in use_gpu and "[True]" not in use_gpu  # a CPU machine never reads "True" alone
    _help(monkeypatch, "--recommend")
    assert not MARKUP.search(capsys.readouterr().out)


@pytest.mark.parametrize("command", [[], ["mmrec"], ["synthetic"], ["movielens"]])
def test_prepare_help_has_no_markup(command, capsys):
    from recbole_gtc.prepare.__main__ import main

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = capsys.readouterr().out
    assert "usage:" in text and not MARKUP.search(text), text
