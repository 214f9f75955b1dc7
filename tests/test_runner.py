"""run_recbole_gtc.py end to end, as a user runs it."""

import os
import re
import subprocess
import sys

import pytest

from recbole_gtc.utils import REPO_ROOT

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
    assert re.search(r"^\| BPR \| 2 \|", out.stdout, re.M) and re.search(r"^\| LightGCN \| 2 \|", out.stdout, re.M)
    assert "test: {'recall@5'" in out.stdout and "best valid: {" in out.stdout


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
