"""Runs own their files: concurrent runs never mix, checkpoints are atomic, a killed run
resumes to the same numbers, the best checkpoint is the whole best epoch, outputs are tidy."""

import errno
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import pytest
import torch

from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.files import atomic_save
from recbole_gtc.utils.utils import REPO_ROOT

RUNNER = os.path.join(REPO_ROOT, "run_recbole_gtc.py")
SUMMARY = re.compile(r"^SUMMARY model=(\S+) dataset=(\S+) protocol=\S+ test recall@20=([0-9.]+) ndcg@20=([0-9.]+) "
                     r"run=(\S+)$", re.M)
TEST_LINE = re.compile(r"^test: (\{.*\})$", re.M)


def _runner(cwd, *args, timeout=300):
    return subprocess.Popen(
        [sys.executable, RUNNER, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _test_dict(stdout):
    return eval(TEST_LINE.search(stdout).group(1))  # the runner prints a dict of floats


def test_concurrent_runs_in_one_folder_report_what_they_report_alone(tmp_path, tiny):
    common = ["--model=BPR", "--dataset=tiny", f"--data_path={tiny}", "--epochs=3", "--stopping_step=100"]
    procs = {seed: _runner(tmp_path, *common, f"--seed={seed}") for seed in (1, 2, 3)}
    together = {seed: _finish(proc)[0] for seed, proc in procs.items()}
    runs = sorted(glob.glob(str(tmp_path / "saved" / "BPR-tiny-*")))
    assert len(runs) == 3
    assert all(os.path.isfile(os.path.join(r, "best.pth")) for r in runs)
    assert not glob.glob(str(tmp_path / "saved" / "*.pth")) and not os.path.exists(tmp_path / "log_tensorboard")
    for seed, stdout in together.items():
        alone = run_recbole_gtc("BPR", "tiny", config_dict={
            "data_path": tiny, "epochs": 3, "stopping_step": 100, "seed": seed, "state": "WARNING",
            "checkpoint_dir": str(tmp_path / f"alone{seed}"),
        })
        assert _test_dict(stdout) == alone["test_result"], seed
        run_id = SUMMARY.search(stdout).group(5)
        assert os.path.isdir(tmp_path / "saved" / run_id)
        with open(tmp_path / "saved" / run_id / "run.json") as handle:
            meta = json.load(handle)
        assert meta["status"] == "finished" and meta["config"]["seed"] == seed
        assert meta["result"]["test_result"] == _test_dict(stdout)


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    from recbole_gtc.utils.errors import DiskFullError, WriteError

    path = str(tmp_path / "best.pth")
    atomic_save({"x": torch.arange(3)}, path)
    real_save = torch.save

    def dying_save(obj, f, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(DiskFullError, match=f"^{tmp_path}: no space left on device \\(writing best.pth\\)$"):
        atomic_save({"x": torch.arange(5)}, path)
    def torch_like(obj, f, **kwargs):  # what torch raises when the file object's write fails
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 66048 vs 65940")

    monkeypatch.setattr(torch, "save", torch_like)
    with pytest.raises(DiskFullError, match="no space left on device"):
        atomic_save({"x": torch.arange(5)}, path)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only")))
    with pytest.raises(WriteError, match="best.pth: cannot write \\(Read-only\\)"):
        atomic_save({"x": torch.arange(5)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert os.listdir(tmp_path) == ["best.pth"]


def test_a_killed_run_resumes_to_the_uninterrupted_metrics(tmp_path, tiny):
    args = ["--model=GTC", "--dataset=tiny", f"--data_path={tiny}", "--epochs=6", "--stopping_step=100",
            "--learning_rate=0.01", "--graph_cache_dir=None"]
    whole, _ = _finish(_runner(tmp_path, *args, f"--checkpoint_dir={tmp_path / 'whole'}"))

    killed = _runner(tmp_path, *args, f"--checkpoint_dir={tmp_path / 'k'}")
    deadline = time.time() + 240
    while time.time() < deadline:  # SIGKILL as soon as epoch 2 has been evaluated
        logs = glob.glob(str(tmp_path / "k" / "GTC-tiny-*" / "run.log"))
        if logs and "epoch 2 evaluating" in open(logs[0]).read():
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert glob.glob(str(tmp_path / "k" / "GTC-tiny-*" / "last.pth")), "the run ended before it was killed"

    # Another configuration is refused and leaves the interrupted run resumable.
    other = subprocess.run([sys.executable, RUNNER, *args, "--learning_rate=0.02", f"--checkpoint_dir={tmp_path / 'k'}",
                            f"--resume={glob.glob(str(tmp_path / 'k' / 'GTC-tiny-*'))[0]}"],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "cannot resume: its configuration differs in learning_rate" in other.stderr
    assert "Traceback" not in other.stderr

    resumed, log = _finish(_runner(tmp_path, *args, f"--checkpoint_dir={tmp_path / 'k'}", "--resume"))
    assert re.search(r"training continues at epoch [1-5]\b", log), log[-2000:]
    assert _test_dict(resumed) == _test_dict(whole)
    run_dir = glob.glob(str(tmp_path / "k" / "GTC-tiny-*"))[0]
    assert sorted(os.listdir(run_dir)) == ["best.pth", "run.json", "run.log", "tensorboard", "test_groups.csv",
                                           "test_per_user.npz"]  # last.pth removed


def test_run_json_holds_the_result_and_the_configuration_as_json_values(tmp_path, tiny):
    result = run_recbole_gtc("BPR", "tiny", config_dict={
        "data_path": tiny, "epochs": 3, "stopping_step": 100, "state": "WARNING",
        "checkpoint_dir": str(tmp_path / "saved")})
    with open(os.path.join(result["run_dir"], "run.json")) as handle:
        meta = json.load(handle)
    stored = meta["result"]
    # RecBole's run_recbole keys, then the training length and cost
    for key in ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result", "epochs"):
        assert stored[key] == result[key], key
    assert stored["valid_score_bigger"] is True and stored["test_result"]["recall@20"] > 0
    seconds = stored["epoch_seconds"]
    assert len(seconds) == 3 and stored["train_seconds_per_epoch"] == statistics.median(seconds[1:])  # after warm-up
    config = meta["config"]
    assert config["USER_ID_FIELD"] == "user_id" and config["seed"] == 999 and config["epochs"] == 3
    assert config["topk"] == [5, 10, 20, 50] and config["eval_args"]["group_by"] == "user"
    assert config["MODEL_TYPE"] == "ModelType.GENERAL"  # no JSON type: its str
    assert "data_path" not in config  # where files live never changes a run's numbers


def test_resume_names_what_differs_also_in_a_run_json_of_an_earlier_version(tmp_path, tiny):
    """Earlier versions stored the configuration as reprs; the refusal still names only the key that differs."""
    from recbole_gtc.trainer.run import RESUME_CHECKPOINT, Run, config_items

    config = load_config("BPR", "tiny", config_dict={"data_path": tiny, "checkpoint_dir": str(tmp_path / "s")})
    old = os.path.join(str(tmp_path / "s"), "BPR-tiny-old")
    os.makedirs(old)
    reprs = dict(config_items(config), learning_rate=repr(0.5))
    with open(os.path.join(old, "run.json"), "w") as handle:
        json.dump({"model": "BPR", "dataset": "tiny", "fingerprint": "0" * 40, "status": "running",
                   "config": reprs}, handle)
    open(os.path.join(old, RESUME_CHECKPOINT), "wb").close()
    with pytest.raises(RecboleGTCError, match=r"cannot resume: its configuration differs in learning_rate$"):
        Run.start(config, resume=old)


def test_resume_with_nothing_to_resume_is_one_line(tmp_path, tiny):
    out = subprocess.run([sys.executable, RUNNER, "--model=BPR", "--dataset=tiny", f"--data_path={tiny}",
                          f"--checkpoint_dir={tmp_path / 's'}", "--resume"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no interrupted run of this configuration to resume" in out.stderr
    assert "Traceback" not in out.stderr


def _trainer(trainer_class, config, model, tmp_path):
    # RecBole's Trainer opens ./log_tensorboard/; a test writes under its own tmp_path only.
    from recbole_gtc.trainer.trainer import _tensorboard_under

    with _tensorboard_under(str(tmp_path / "tensorboard")):
        return trainer_class(config, model)


def test_best_checkpoint_reproduces_the_best_validation_score(tmp_path, tiny):
    """Everything predictions depend on (GTC's per-epoch user-graph padding included) is in best.pth."""
    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.model.general_recommender.gtc import GTC
    from recbole_gtc.trainer.trainer import MMTrainer

    overrides = {"data_path": tiny, "epochs": 5, "stopping_step": 100, "learning_rate": 0.01, "state": "WARNING",
                 "checkpoint_dir": str(tmp_path / "saved"), "graph_cache_dir": None, "user_graph_k": 40}
    result = run_recbole_gtc("GTC", "tiny", config_dict=overrides)
    best = os.path.join(result["run_dir"], "best.pth")
    assert os.path.isfile(best)

    config = load_config("GTC", "tiny", config_dict=overrides)
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = GTC(config, train_data.dataset)
    model.on_epoch_start(123)  # a padding draw no training epoch used
    trainer = _trainer(MMTrainer, config, model, tmp_path)
    again = trainer.evaluate(valid_data, load_best_model=True, model_file=best)
    assert dict(again) == result["best_valid_result"]


def test_failed_run_removes_its_checkpoints_and_saved_false_keeps_none(tmp_path, tiny, monkeypatch):
    overrides = {"data_path": tiny, "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / "saved")}
    result = run_recbole_gtc("BPR", "tiny", config_dict=overrides, saved=False)
    assert os.listdir(result["run_dir"]) and not glob.glob(os.path.join(result["run_dir"], "*.pth"))

    from recbole_gtc.trainer import trainer as trainer_module

    def broken_epoch(self, *args, **kwargs):
        if self.train_loss_dict:  # the second epoch fails, after a best checkpoint exists
            raise ValueError("Training loss is nan")
        return original(self, *args, **kwargs)

    original = trainer_module.MMTrainer._train_epoch
    monkeypatch.setattr(trainer_module.MMTrainer, "_train_epoch", broken_epoch)
    with pytest.raises(ValueError):
        run_recbole_gtc("BPR", "tiny", config_dict=dict(overrides, checkpoint_dir=str(tmp_path / "failed")))
    (run_dir,) = glob.glob(str(tmp_path / "failed" / "BPR-tiny-*"))
    assert not glob.glob(os.path.join(run_dir, "*.pth"))
    with open(os.path.join(run_dir, "run.json")) as handle:
        assert json.load(handle)["status"] == "failed"


@pytest.mark.parametrize("train_denoiser", [True, False])
def test_train_denoiser_switch(tmp_path, tiny, train_denoiser):
    """False keeps every denoiser weight at its initial value (the released code); True trains them.
    Either way the projections learn, through the denoiser."""
    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.model.general_recommender.gtc import GTC
    from recbole_gtc.trainer.trainer import MMTrainer

    config = load_config("GTC", "tiny", config_dict={
        "data_path": tiny, "train_denoiser": train_denoiser, "learning_rate": 0.01, "state": "WARNING",
        "checkpoint_dir": str(tmp_path), "graph_cache_dir": None, "tc_scope": "all",
    })
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = GTC(config, train_data.dataset)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(MMTrainer, config, model, tmp_path)._train_epoch(train_data, 0)
    after = model.state_dict()
    denoiser_keys = [k for k in before if k.startswith("denoisers.")]
    changed = [k for k in denoiser_keys if not torch.equal(before[k], after[k])]
    assert denoiser_keys
    if train_denoiser:
        assert len(changed) == len(denoiser_keys)
    else:
        assert changed == []
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("projections."))


def test_a_run_killed_after_early_stopping_resumes_without_training_on(tmp_path, tiny, monkeypatch):
    from recbole_gtc.trainer.trainer import MMTrainer

    overrides = {"data_path": tiny, "epochs": 60, "stopping_step": 1, "learning_rate": 0.05, "state": "WARNING",
                 "checkpoint_dir": str(tmp_path / "whole")}
    whole = run_recbole_gtc("BPR", "tiny", config_dict=overrides)
    assert whole["epochs"] < 60  # early stopping ended it

    original = MMTrainer.evaluate

    def killed_during_test(self, eval_data, load_best_model=True, **kwargs):
        if load_best_model:
            raise KeyboardInterrupt  # the process dies after training, while testing
        return original(self, eval_data, load_best_model=load_best_model, **kwargs)

    monkeypatch.setattr(MMTrainer, "evaluate", killed_during_test)
    overrides["checkpoint_dir"] = str(tmp_path / "k")
    with pytest.raises(KeyboardInterrupt):
        run_recbole_gtc("BPR", "tiny", config_dict=overrides)
    monkeypatch.setattr(MMTrainer, "evaluate", original)
    resumed = run_recbole_gtc("BPR", "tiny", config_dict=overrides, resume=True)
    assert resumed["epochs"] == whole["epochs"]  # not one epoch more
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert resumed["test_result"] == whole["test_result"]


def test_resume_refuses_another_model_dataset_or_a_damaged_checkpoint(tmp_path, tiny, monkeypatch):
    from recbole_gtc.trainer.trainer import MMTrainer
    from recbole_gtc.utils.errors import RecboleGTCError

    overrides = {"data_path": tiny, "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / "k")}
    original = MMTrainer.evaluate

    def killed_during_test(self, eval_data, load_best_model=True, **kwargs):
        if load_best_model:
            raise KeyboardInterrupt
        return original(self, eval_data, load_best_model=load_best_model, **kwargs)

    monkeypatch.setattr(MMTrainer, "evaluate", killed_during_test)
    with pytest.raises(KeyboardInterrupt):
        run_recbole_gtc("BPR", "tiny", config_dict=overrides)
    monkeypatch.setattr(MMTrainer, "evaluate", original)
    (run_dir,) = glob.glob(str(tmp_path / "k" / "BPR-tiny-*"))

    with pytest.raises(RecboleGTCError, match="cannot resume: it is a BPR run, not LightGCN"):
        run_recbole_gtc("LightGCN", "tiny", config_dict=overrides, resume=run_dir)
    synth = dict(overrides, data_path=os.path.join(REPO_ROOT, "dataset"))
    with pytest.raises(RecboleGTCError, match="cannot resume: it was trained on dataset tiny, not synth-mm"):
        run_recbole_gtc("BPR", "synth-mm", config_dict=synth, resume=run_dir)
    last = os.path.join(run_dir, "last.pth")
    assert os.path.isfile(last)  # refusals leave the interrupted run as it was
    with open(last, "r+b") as handle:
        handle.truncate(os.path.getsize(last) // 2)
    with pytest.raises(RecboleGTCError, match="last.pth: unreadable checkpoint"):
        run_recbole_gtc("BPR", "tiny", config_dict=overrides, resume=run_dir)


def test_a_run_without_best_checkpoint_is_never_resumed_as_one_with(tiny, tmp_path):
    from recbole_gtc.utils.errors import RecboleGTCError
    """A killed tuning trial (saved=False: no best.pth) has the fingerprint of the study run
    with the same values; the study must not continue it and then test a missing best.pth."""
    from recbole_gtc.quick_start.quick_start import load_config
    from recbole_gtc.trainer.run import Run, resumable_run

    config = load_config("BPR", "tiny", config_dict={"data_path": tiny, "checkpoint_dir": str(tmp_path)})
    trial = Run.start(config, saved=False)
    open(trial.resume_checkpoint, "wb").close()  # an epoch saved
    assert resumable_run(config, saved=False) is None  # its owner still holds it
    trial.release()  # killed: the operating system releases the lock
    assert resumable_run(config, saved=True) is None
    assert resumable_run(config, saved=False) == trial.dir
    with pytest.raises(RecboleGTCError, match="started with --saved=False"):
        Run.start(config, resume=trial.dir, saved=True)


def test_a_study_tests_at_the_best_epoch_only(tiny, tmp_path):
    from recbole_gtc.study.compare import run_study
    from recbole_gtc.utils.errors import RecboleGTCError

    with pytest.raises(RecboleGTCError, match="--saved=False and --seeds"):
        run_study("BPR", "tiny", "2", cmd_args=[f"--data_path={tiny}"], results_dir=str(tmp_path), saved=False)
