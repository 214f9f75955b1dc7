"""Reliability (issue 24): a full disk or a Ctrl-C never loses a run and ends in one line that
says how to continue; a diverging run stops, names the epoch and the likely cause and keeps no
non-finite checkpoint; hand-made atomic files get the checks `prepare mmrec` makes; grid files
are data; a run folder has one owner; RecBole's own errors are one `error:` line."""

import errno
import glob
import json
import os
import re
import shutil
import signal

import numpy as np
import pytest
import torch
from toydata import N_ITEMS, N_USERS, features, random_splits, write_dataset

from recbole_gtc.cli import main
from recbole_gtc.utils.errors import DivergenceError, RecboleGTCError

TEST_LINE = re.compile(r"^test: (\{.*\})$", re.M)
#: The toy datasets have 30 items: full ranking needs topk <= 30.
TOPK = "topk: [5, 10, 20]\n"


def _common(data_path, checkpoint_dir, epochs=4):
    return ["--model=BPR", "--dataset=tiny", f"--data_path={data_path}", f"--checkpoint_dir={checkpoint_dir}",
            f"--epochs={epochs}", "--stopping_step=100", "--learning_rate=0.01", "--use_gpu=False",
            "--state=WARNING"]


def _one_error(err):
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


def _test_result(out):
    return eval(TEST_LINE.search(out).group(1))  # the runner prints a dict of floats


def _meta(run_dir):
    with open(os.path.join(run_dir, "run.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    """The test result of the 4-epoch BPR run every interrupted run below must end with."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(_common(tiny, tmp_path_factory.mktemp("whole"))) == 0
    return _test_result(out.getvalue())


# ---------------------------------------------------------------- 1. a full disk
@pytest.mark.parametrize("stays_full", [False, True], ids=["checkpoint-write-fails", "disk-stays-full"])
def test_a_full_disk_keeps_the_last_good_checkpoints_and_the_run_resumes(tiny, tmp_path, monkeypatch, capsys,
                                                                        uninterrupted, stays_full):
    """Every checkpoint write from epoch 1 on hits ENOSPC (with ``stays_full``, so does every later
    write: run.json's update too). The files of epoch 0 survive, the run ends with one line that
    says the disk is full, names the folder and how to continue, and --resume then ends with the
    uninterrupted run's numbers."""
    from recbole_gtc.utils import files

    real_save, real_fsync = torch.save, files._fsync
    disk = {"full": False}

    def save(obj, handle, **kwargs):
        if disk["full"] or (isinstance(obj, dict) and isinstance(obj.get("epoch"), int) and obj["epoch"] >= 1):
            disk["full"] = stays_full
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, **kwargs)

    def fsync(path):
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(path)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(files, "_fsync", fsync)
    saved = tmp_path / "saved"
    assert main(_common(tiny, saved)) == 2
    line = _one_error(capsys.readouterr().err)
    (run_dir,) = glob.glob(str(saved / "BPR-tiny-*"))
    assert re.fullmatch(rf"error: {re.escape(run_dir)}: no space left on device \(writing (best|last)\.pth\); "
                        rf"last\.pth \(epoch 0\) and best\.pth kept: free space, then continue with "
                        rf"--resume={re.escape(run_dir)}", line), line
    assert sorted(n for n in os.listdir(run_dir) if n.endswith((".pth", ".tmp"))) == ["best.pth", "last.pth"]
    assert torch.load(os.path.join(run_dir, "last.pth"), weights_only=True)["epoch"] == 0
    assert torch.load(os.path.join(run_dir, "best.pth"), weights_only=False)["epoch"] == 0
    meta = _meta(run_dir)
    assert meta["status"] == ("running" if stays_full else "interrupted")  # a full disk may refuse run.json too
    if not stays_full:
        assert meta["error"] == line[len("error: "):]
    assert "no space left on device" in open(os.path.join(run_dir, "run.log")).read()

    monkeypatch.setattr(torch, "save", real_save)  # space freed
    monkeypatch.setattr(files, "_fsync", real_fsync)
    resume = f"--resume={run_dir}" if not stays_full else "--resume"  # the latest interrupted one is found too
    assert main(_common(tiny, saved) + [resume]) == 0
    out = capsys.readouterr().out
    assert _test_result(out) == uninterrupted
    assert _meta(run_dir)["status"] == "finished" and "error" not in _meta(run_dir)


# ---------------------------------------------------------------- 6. Ctrl-C
def test_ctrl_c_is_one_line_saying_what_was_kept_exit_130_and_resume_continues(tiny, tmp_path, monkeypatch, capsys,
                                                                               uninterrupted):
    from recbole_gtc.trainer.trainer import MMTrainer

    original = MMTrainer._train_epoch

    def interrupted(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(MMTrainer, "_train_epoch", interrupted)
    saved = tmp_path / "saved"
    assert main(_common(tiny, saved)) == 130
    line = _one_error(capsys.readouterr().err)
    (run_dir,) = glob.glob(str(saved / "BPR-tiny-*"))
    assert line == (f"error: interrupted (Ctrl-C) in {run_dir}; last.pth (epoch 1) and best.pth kept: "
                    f"continue with --resume={run_dir}")
    assert _meta(run_dir)["status"] == "interrupted"
    assert "interrupted (Ctrl-C)" in open(os.path.join(run_dir, "run.log")).read()
    monkeypatch.setattr(MMTrainer, "_train_epoch", original)
    assert main(_common(tiny, saved) + [f"--resume={run_dir}"]) == 0
    assert _test_result(capsys.readouterr().out) == uninterrupted


def test_sigterm_stops_a_run_as_ctrl_c_does_exit_143_and_resume_continues(tiny, tmp_path, monkeypatch, capsys,
                                                                          uninterrupted):
    """``kill PID`` (a scheduler's time limit) records ``interrupted``, not a run left ``running``."""
    from recbole_gtc.trainer.trainer import MMTrainer

    original = MMTrainer._train_epoch

    def terminated(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(MMTrainer, "_train_epoch", terminated)
    saved = tmp_path / "saved"
    handler = signal.getsignal(signal.SIGTERM)
    assert main(_common(tiny, saved)) == 143
    assert signal.getsignal(signal.SIGTERM) is handler  # the entry point restores the handler
    line = _one_error(capsys.readouterr().err)
    (run_dir,) = glob.glob(str(saved / "BPR-tiny-*"))
    assert line == (f"error: interrupted (SIGTERM) in {run_dir}; last.pth (epoch 1) and best.pth kept: "
                    f"continue with --resume={run_dir}")
    assert _meta(run_dir)["status"] == "interrupted"
    monkeypatch.setattr(MMTrainer, "_train_epoch", original)
    assert main(_common(tiny, saved) + [f"--resume={run_dir}"]) == 0
    assert _test_result(capsys.readouterr().out) == uninterrupted


# ---------------------------------------------------------------- 3. divergence
@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """``data/`` with datasets whose features are ~1e30 (float32) and one float64 row at 1e300."""
    root = tmp_path_factory.mktemp("scaled")
    splits = random_splits(N_USERS, N_ITEMS)
    write_dataset(root, "huge", splits, {m: f * 1e30 for m, f in features(["image", "text"]).items()}, N_ITEMS,
                  extra=TOPK)
    overflow = features(["image"])["image"].astype(np.float64)
    overflow[3, 1] = 1e300
    write_dataset(root, "overflow", splits, {"image": overflow}, N_ITEMS, extra=TOPK)
    return root


def test_an_infinite_loss_stops_the_run_naming_the_epoch_and_the_feature_scale(scaled, tmp_path, capsys):
    """RecBole checks only NaN: an inf loss trained on, kept non-finite weights in best.pth and
    printed a recall. Now: one line, the run failed, no checkpoint, the reason in run.log."""
    args = ["--model=VBPR", "--dataset=huge", f"--data_path={scaled}", f"--checkpoint_dir={tmp_path}",
            "--epochs=2", "--use_gpu=False", "--state=WARNING"]
    assert main(args) == 2
    captured = capsys.readouterr()
    line = _one_error(captured.err)
    assert re.match(r"error: epoch 0: training diverged: the training loss is (inf|nan); likely cause: features at "
                    r"too large a scale \(largest \|value\| [0-9.]+e\+30, modality (image|text); standardise the "
                    r"feature files\) or a learning rate too high \(learning_rate=0\.001; try a smaller one\)", line), line
    assert "SUMMARY" not in captured.out
    (run_dir,) = glob.glob(str(tmp_path / "VBPR-huge-*"))
    assert not glob.glob(os.path.join(run_dir, "*.pth"))
    assert _meta(run_dir)["status"] == "failed" and _meta(run_dir)["error"] == line[len("error: "):]
    assert line[len("error: "):] in open(os.path.join(run_dir, "run.log")).read()


def test_recboles_nan_check_and_non_finite_weights_are_divergence_errors(tiny, tmp_path):
    """The check itself: NaN and inf losses, and weights gone non-finite after an epoch."""
    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.quick_start.quick_start import load_config
    from recbole_gtc.trainer.trainer import MMTrainer, _tensorboard_under
    from recbole_gtc.utils.utils import get_model

    config = load_config("BPR", "tiny", config_dict={"data_path": tiny, "checkpoint_dir": str(tmp_path),
                                                     "learning_rate": 3.5, "state": "WARNING"})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("BPR")(config, train.dataset)
    with _tensorboard_under(str(tmp_path / "tb")):
        trainer = MMTrainer(config, model)
    trainer._current_epoch = 7
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(DivergenceError, match=rf"^epoch 7: training diverged: the training loss is "
                                                  rf"{value.strip('-')}; likely cause: a learning rate too high "
                                                  rf"\(learning_rate=3\.5; try a smaller one\); no checkpoint"):
            trainer._check_nan(torch.tensor(float(value)))
    trainer._check_nan(torch.tensor(1e30))
    with torch.no_grad():
        model.user_embedding.weight[0, 1] = float("nan")  # the padding user: in no batch, the loss stays finite
    with pytest.raises(DivergenceError, match=r"^epoch 0: training diverged: non-finite weights \(NaN or inf, first "
                                              r"in user_embedding.weight\)"):
        trainer._train_epoch(train, 0)
    with pytest.raises(DivergenceError, match="not saved"):
        trainer._save_checkpoint(0, verbose=False, saved_model_file=str(tmp_path / "best.pth"))
    assert not os.path.exists(tmp_path / "best.pth")


def test_a_float64_feature_that_overflows_float32_names_the_file(scaled, tmp_path, capsys):
    args = ["--model=BPR", "--dataset=overflow", f"--data_path={scaled}", f"--checkpoint_dir={tmp_path}"]
    assert main(args) == 2
    line = _one_error(capsys.readouterr().err)
    assert line == (f"error: {scaled}/overflow/image_feat.npy: value 1e+300 in row 3 overflows float32, the dtype the "
                    f"models use (largest finite float32: 3.4e+38); rescale the features")
    assert not os.listdir(tmp_path)  # refused before a run folder exists


def test_a_study_records_a_diverging_run_as_failed_and_reports_the_others(scaled, tmp_path, capsys):
    """BPR ignores the features; VBPR diverges on them. The study goes on, the report lists the
    failure, exit status 1 (2 is for "nothing done")."""
    args = ["--model=BPR,VBPR", "--dataset=huge", "--seeds=1", f"--data_path={scaled}",
            f"--checkpoint_dir={tmp_path / 'saved'}", f"--results_dir={tmp_path / 'results'}", "--epochs=2",
            "--use_gpu=False"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and not re.search(r"^error:", captured.err, re.M)
    assert re.search(r"^warning: VBPR seed \d+ failed: epoch 0: training diverged", captured.err, re.M)
    assert "## Failed runs (1)" in captured.out and "| VBPR |" in captured.out
    page = open(tmp_path / "results" / "huge" / "comparison.md").read()
    assert "## Failed runs (1)" in page and "training diverged" in page
    runs = open(tmp_path / "results" / "huge" / "runs.csv").read()
    assert "BPR" in runs and "VBPR" not in runs


def _recommend(capsys, *args):
    code = main(["--recommend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A finished BPR run's folder on a copy of ``tiny`` (which some tests change)."""
    from recbole_gtc.quick_start.quick_start import run_recbole_gtc

    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(os.path.join(tiny, "tiny"), root / "tiny")
    result = run_recbole_gtc("BPR", "tiny", config_dict={
        "data_path": str(root), "epochs": 2, "state": "WARNING", "use_gpu": False,
        "checkpoint_dir": str(tmp_path_factory.mktemp("saved"))})
    return root, result["run_dir"]


def test_recommend_refuses_non_finite_weights_and_scores(trained, tmp_path, capsys, monkeypatch):
    from recbole_gtc.quick_start import recommend as recommend_module

    _, run_dir = trained
    state = torch.load(os.path.join(run_dir, "best.pth"), weights_only=False)
    state["state_dict"]["item_embedding.weight"][5, 0] = float("nan")
    bad = str(tmp_path / "diverged.pth")
    torch.save(state, bad)
    code, out, err = _recommend(capsys, "--checkpoint", bad, "--users", "1")
    assert code == 2 and out == ""
    assert _one_error(err) == (f"error: {bad}: holds non-finite weights (NaN or inf in item_embedding.weight): the "
                               f"run diverged; retrain it (e.g. with a smaller learning_rate)")

    real = recommend_module.score_users

    def nan_for_the_second(*args, **kwargs):
        scores = real(*args, **kwargs)
        scores[1, 4] = float("nan")
        return scores

    monkeypatch.setattr(recommend_module, "score_users", nan_for_the_second)
    code, out, err = _recommend(capsys, "--checkpoint", run_dir, "--users", "1,2")
    assert code == 2 and out == ""
    assert _one_error(err).startswith(f"error: {run_dir}/best.pth: the model gives non-finite scores (NaN or inf) "
                                      f"for user(s) 2; its ranking would be arbitrary")


@pytest.mark.parametrize("content", [{"config": {"dataset": "tiny"}, "state_dict": {}},
                                     {"config": "x", "state_dict": 1}], ids=["config-a-dict", "config-a-string"])
def test_a_checkpoint_that_is_not_recboles_is_one_line(tmp_path, capsys, content):
    path = str(tmp_path / "other.pth")
    torch.save(content, path)
    code, _, err = _recommend(capsys, "--checkpoint", path, "--users", "1")
    assert code == 2 and _one_error(err).startswith(f"error: {path}: not a RecBole checkpoint: its 'config' is a ")


# ---------------------------------------------------------------- 5. one owner, the dataset's fingerprint
def test_recommend_refuses_a_dataset_other_than_the_runs(trained, capsys):
    """Same name, same sizes, one training row moved to another item: the weights would load."""
    root, run_dir = trained
    train = root / "tiny" / "tiny.train.inter"
    original = train.read_text()
    lines = original.splitlines()
    user, item = lines[1].split("\t")[:2]
    taken = {line.split("\t")[1] for line in lines[1:] if line.split("\t")[0] == user}
    free = next(str(i) for i in range(80) if str(i) not in taken)
    train.write_text("\n".join([lines[0], lines[1].replace(f"{user}\t{item}", f"{user}\t{free}", 1), *lines[2:]]) + "\n")
    try:
        code, out, err = _recommend(capsys, "--checkpoint", run_dir, "--users", "1")
        assert code == 2 and out == ""
        assert _one_error(err) == (
            f"error: {root}/tiny: not the dataset checkpoint {run_dir}/best.pth was trained on (its files differ from "
            f"those recorded in {run_dir}/run.json); point --data_path at the run's dataset, or pass "
            f"--allow_dataset_change to recommend from it anyway")
        code, out, err = _recommend(capsys, "--checkpoint", run_dir, "--users", "1", "--allow_dataset_change")
        assert code == 0 and out.startswith("user,rank,item,score\n1,1,")
        assert err.startswith(f"warning: {root}/tiny: not the dataset checkpoint") and "error:" not in err
    finally:
        train.write_text(original)
    assert _recommend(capsys, "--checkpoint", run_dir, "--users", "1")[0] == 0


def test_a_second_resume_of_the_same_folder_is_refused_and_a_reused_pid_hides_nothing(tiny, tmp_path):
    from recbole_gtc.quick_start.quick_start import load_config
    from recbole_gtc.trainer.run import RUN_FILE, Run, resumable_run

    config = load_config("BPR", "tiny", config_dict={"data_path": tiny, "checkpoint_dir": str(tmp_path)})
    first = Run.start(config)
    open(first.resume_checkpoint, "wb").close()  # an epoch saved; its process is still training
    with pytest.raises(RecboleGTCError, match=rf"^{re.escape(first.dir)}: another process is training this run now "
                                              rf"\(it holds run.lock\); wait for it to end"):
        Run.start(config, resume=first.dir)
    with pytest.raises(RecboleGTCError, match=r"no interrupted run of this configuration to resume \(1 being trained "
                                              r"by another process now\)"):
        Run.start(config, resume=True)
    first.release()  # the process is killed: the operating system releases its lock

    # run.json names the pid of a live process (here pid 1): after a reboot a killed run's pid
    # often belongs to another process. Only the lock counts.
    meta = _meta(first.dir)
    meta["pid"] = 1
    with open(os.path.join(first.dir, RUN_FILE), "w") as handle:
        json.dump(meta, handle)
    assert resumable_run(config) == first.dir
    second = Run.start(config, resume=True)
    assert second.dir == first.dir
    second.release()


# ---------------------------------------------------------------- 2. the runner checks hand-made files
@pytest.fixture
def hand_made(tmp_path):
    """``tmp/data/<name>`` datasets written by hand: ``leak`` (test pairs also trained on),
    ``dup`` (a duplicate training row), ``cold`` (test rows of users with no training row),
    ``allitems`` (a user with every item), ``emptyvalid`` and ``onlycold`` (a valid split of
    cold users only)."""
    root = tmp_path / "data"
    feats = features(["image"])
    splits = random_splits(N_USERS, N_ITEMS)
    leak = {k: list(v) for k, v in splits.items()}
    leak["train"] += splits["test"][:3]
    write_dataset(root, "leak", leak, feats, N_ITEMS, extra=TOPK)
    dup = {k: list(v) for k, v in splits.items()}
    dup["train"].append(splits["train"][0])
    write_dataset(root, "dup", dup, feats, N_ITEMS, extra=TOPK)
    cold = {k: list(v) for k, v in splits.items()}
    cold["test"] += [(N_USERS + 1, 2), (N_USERS + 1, 5), (N_USERS + 2, 7)]
    write_dataset(root, "cold", cold, feats, N_ITEMS, extra=TOPK)
    full = {k: list(v) for k, v in splits.items()}
    full["train"] += [(N_USERS + 5, i) for i in range(N_ITEMS)]
    write_dataset(root, "allitems", full, feats, N_ITEMS, extra=TOPK)
    write_dataset(root, "emptyvalid", dict(splits, valid=[]), feats, N_ITEMS, extra=TOPK)
    write_dataset(root, "onlycold", dict(splits, valid=[(N_USERS + 1, 2)]), feats, N_ITEMS, extra=TOPK)
    write_dataset(root, "clean", splits, feats, N_ITEMS, extra=TOPK)
    return root


def _run(root, name, capsys, *extra):
    code = main(["--model=BPR", f"--dataset={name}", f"--data_path={root}", f"--checkpoint_dir={root.parent / 's'}",
                 "--epochs=2", "--use_gpu=False", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name, expected", [
    ("leak", "{root}/leak: 3 (user, item) pair(s) appear in more than one split (train+test: 3; e.g. user u"),
    ("allitems", "{root}/allitems/allitems.train.inter: user u45 has interacted with every item training negatives "
                 "are drawn from (30), so no negative item can be sampled for it"),
    ("emptyvalid", "{root}/emptyvalid/emptyvalid.valid.inter: the valid split has no rows; training would run for "
                   "nothing"),
    ("onlycold", "{root}/onlycold/onlycold.valid.inter: the valid split has no rows of users with training rows"),
])
def test_hand_made_splits_are_refused_before_training(hand_made, capsys, monkeypatch, name, expected):
    from recbole_gtc.trainer.trainer import MMTrainer

    def never(*args, **kwargs):
        raise AssertionError("trained")

    monkeypatch.setattr(MMTrainer, "_train_epoch", never)
    code, out, err = _run(hand_made, name, capsys)
    assert code == 2 and "SUMMARY" not in out
    assert _one_error(err).startswith("error: " + expected.format(root=hand_made)), err


def test_duplicates_are_reported_and_cold_users_left_out_of_evaluation(hand_made, capsys):
    code, out, err = _run(hand_made, "dup", capsys)
    assert code == 0, err
    assert re.search(r"1 duplicate \(user, item\) row\(s\) within a split \(train 1; e\.g\. user u0 item \d+ in "
                     r"train\); kept as RecBole reads them", err)
    code, out, err = _run(hand_made, "cold", capsys)
    assert code == 0, err
    assert (f"{hand_made}/cold/cold.test.inter: 3 test row(s) of 2 user(s) without training rows (e.g. user u41) left "
            f"out of evaluation") in err
    from recbole_gtc.trainer.run import load_per_user

    run_dir = os.path.dirname(re.search(r"^written: (\S+run\.json)", out, re.M).group(1))
    users, _ = load_per_user(os.path.join(run_dir, "test_per_user.npz"))
    assert len(users) == N_USERS and not {"u41", "u42"} & set(users)  # the test users: those with training rows


def test_drop_leaked_keeps_each_pair_in_its_earliest_split_only(hand_made, capsys):
    """``--drop_leaked=True``: the 3 test pairs also in training leave the test split, nothing else does."""
    from toydata import config_for

    from recbole_gtc.data import create_dataset, data_preparation

    def pairs(data):
        inter = data.dataset.inter_feat
        return {(int(u), int(i)) for u, i in zip(inter["user_id"], inter["item_id"])}

    splits = {}
    for name, extra in (("leak", {"drop_leaked": True}), ("clean", {})):
        config = config_for(hand_made, name, topk=[5, 10, 20], **extra)
        splits[name] = data_preparation(config, create_dataset(config))
    train, _, test = splits["leak"]
    assert not pairs(train) & pairs(test)
    assert len(test.dataset.inter_feat) == len(splits["clean"][2].dataset.inter_feat) - 3
    code, out, err = _run(hand_made, "leak", capsys, "--drop_leaked=True")
    assert code == 0, err
    assert re.search(rf"{re.escape(str(hand_made))}/leak/leak\.test\.inter: 3 test row\(s\) whose \(user, item\) "
                     r"pair an earlier split holds dropped \(drop_leaked: True; e\.g\. user u\d+ item \d+\)", err), err


# ---------------------------------------------------------------- 4. grid files are data
def test_a_grid_file_is_never_evaluated(tmp_path):
    from recbole_gtc.study.tune import load_space

    marker = tmp_path / "ran"
    path = tmp_path / "evil.hyper"
    path.write_text(f"learning_rate choice [__import__('os').system('touch {marker}')]\n")
    with pytest.raises(RecboleGTCError, match=r"evil.hyper:1: .* is not 'name choice .*grid files are data, never "
                                              r"evaluated"):
        load_space(str(path))
    path.write_text(f"learning_rate choice [0.1] + [open('{marker}', 'w')]\n")
    with pytest.raises(RecboleGTCError, match="not a literal list"):
        load_space(str(path))
    assert not marker.exists()

    path.write_text("a choice [1e-3, 'x', True, None, {'image': 0.5}, (1, 2), -3]\nb uniform -1, 2\n"
                    "c quniform 1,5,1\nd choice 5\n")
    with pytest.raises(RecboleGTCError, match=r"evil.hyper:4: .*the choice values must be a list, got int"):
        load_space(str(path))
    path.write_text("a choice [1e-3, 'x', True, None, {'image': 0.5}, (1, 2), -3]\nb uniform -1, 2\nc quniform 1,5,1\n")
    _, grid = load_space(str(path))
    assert grid == {"a": [0.001, "x", True, None, {"image": 0.5}, [1, 2], -3], "b": None, "c": None}


# ---------------------------------------------------------------- 6. damaged caches, prepare
@pytest.mark.parametrize("damage", ["{}", "[]", "truncated npz", "missing field", "another fingerprint"])
def test_a_damaged_study_cache_entry_counts_as_absent(tmp_path, damage):
    from recbole_gtc.study.cache import RunCache

    cache = RunCache(str(tmp_path / "runs"))
    key = "f" * 40
    record = {"label": "BPR", "model": "BPR", "dataset": "d", "seed": 1, "run_id": "r", "run_dir": "x",
              "fingerprint": key, "eval_protocol": "mmrec", "valid_result": {"recall@20": 0.5},
              "test_result": {"recall@20": 0.25}, "epochs": 3, "train_seconds_per_epoch": 0.1,
              "users": ["1", "2"], "per_user": {"recall@20": [0.0, 0.5]}}
    cache.put(key, record)
    assert cache.get(key)["test_result"] == {"recall@20": 0.25}
    json_path, npz_path = cache._paths(key)
    if damage in ("{}", "[]"):
        open(json_path, "w").write(damage)
    elif damage == "truncated npz":
        with open(npz_path, "r+b") as handle:
            handle.truncate(os.path.getsize(npz_path) // 2)
    else:
        stored = json.load(open(json_path))
        if damage == "missing field":
            del stored["test_result"]
        else:
            stored["fingerprint"] = "0" * 40
        json.dump(stored, open(json_path, "w"))
    assert cache.get(key) is None


def test_prepare_refuses_a_dataset_name_that_is_a_path(tmp_path, capsys):
    from recbole_gtc.prepare.__main__ import main as prepare_main

    assert prepare_main(["synthetic", "--dataset", "a/b", "--preset", "tiny", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert _one_error(err) == ("error: --dataset='a/b': must be a dataset name (a folder and file name, no '/'); "
                               "choose where the dataset is written with --out DIR")
    assert not os.path.exists(tmp_path / "o")


def test_a_failed_tuning_trial_is_recorded_and_never_chosen(tiny, tmp_path, replace_runner):
    """A learning rate that diverges fails its trial; the search goes on and picks among the others."""
    import csv

    from recbole_gtc.quick_start import quick_start
    from recbole_gtc.study.tune import tune

    real = quick_start.run_recbole_gtc

    def run(model, dataset, config=None, **kwargs):
        if config["learning_rate"] == 10:
            raise DivergenceError("epoch 0: training diverged: the training loss is nan; likely cause: ...")
        return real(model, dataset, config=config, **kwargs)

    replace_runner("run_recbole_gtc", run)
    grid = tmp_path / "BPR.hyper"
    grid.write_text("learning_rate choice [10, 0.01]\n")
    result = tune("BPR", "BPR", "tiny", params_file=str(grid), out_dir=str(tmp_path / "tuned"), early_stop=None,
                  config_dict={"data_path": tiny, "epochs": 2, "state": "WARNING",
                               "checkpoint_dir": str(tmp_path / "saved")})
    assert result["best_params"] == {"learning_rate": 0.01}
    with open(result["trials_csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["learning_rate"] == "10" and rows[0]["error"].startswith("epoch 0: training diverged")
    assert rows[1]["error"] == "" and float(rows[1]["valid_recall@20"]) > 0

    grid.write_text("learning_rate choice [10]\n")
    with pytest.raises(RecboleGTCError, match=r"no trial gave a validation score \(1 of 1 failed, the others NaN\); "
                                              r"e\.g\. \{'learning_rate': 10\}: epoch 0: training diverged"):
        tune("BPR", "BPR", "tiny", params_file=str(grid), out_dir=str(tmp_path / "tuned2"), early_stop=None,
             config_dict={"data_path": tiny, "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / "s2")})


def test_ctrl_c_in_a_study_says_to_run_it_again_which_continues_the_run(tiny, tmp_path, monkeypatch, capsys):
    from recbole_gtc.trainer.trainer import MMTrainer

    original = MMTrainer._train_epoch

    def interrupted(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, *args, **kwargs)

    args = ["--model=BPR", "--dataset=tiny", "--seeds=1", f"--data_path={tiny}", "--epochs=2", "--use_gpu=False",
            f"--checkpoint_dir={tmp_path / 'saved'}", f"--results_dir={tmp_path / 'results'}"]
    monkeypatch.setattr(MMTrainer, "_train_epoch", interrupted)
    assert main(args) == 130
    line = _one_error(capsys.readouterr().err)
    assert re.fullmatch(r"error: interrupted \(Ctrl-C\) in \S+; last\.pth \(epoch 0\) and best\.pth kept: run the "
                        r"same study command again to continue \(finished runs are stored, not retrained\)", line), line
    monkeypatch.setattr(MMTrainer, "_train_epoch", original)
    assert main(args) == 0
    assert re.search(r"\[1/1\] BPR seed \d+: continuing BPR-tiny-", capsys.readouterr().err)


def test_ctrl_c_in_prepare_and_recommend_is_one_line_exit_130(tmp_path, monkeypatch, capsys):
    from recbole_gtc.prepare import __main__ as prepare_cli
    from recbole_gtc.quick_start import recommend as recommend_module

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_cli, "build_synthetic", ctrl_c)
    assert prepare_cli.main(["synthetic", "--dataset", "d", "--out", str(tmp_path / "d")]) == 130
    assert _one_error(capsys.readouterr().err) == ("error: interrupted (Ctrl-C): no dataset was written; run the "
                                                   "command again")
    monkeypatch.setattr(recommend_module, "recommend", ctrl_c)
    assert _recommend(capsys, "--checkpoint", str(tmp_path), "--users", "1")[0] == 130


# ---------------------------------------------------------------- 7. silent surprises
def test_a_misspelt_modality_in_mm_graph_weights_is_an_error_not_equal_weights(tmp_path):
    from toydata import toy_model

    with pytest.raises(RecboleGTCError, match=r"^mm_graph_weights: no modality 'imag' in this dataset "
                                              r"\(its modalities: image, text\)$"):
        toy_model(tmp_path, "GTC", mm_graph_weights={"imag": 0.5}, knn_k=4, user_graph_k=5)
    # The defaults name image and text: a dataset with text only ignores the image weight.
    model, _ = toy_model(tmp_path / "text_only", "GTC", modalities=("text",), knn_k=4, user_graph_k=5)
    assert model.item_graph_weights() == {"text": 1.0}


@pytest.mark.parametrize("text, line", [("learning_rate: 0.01\nepochs: 3\nlearning_rate: 0.1\n", 3),
                                        ("mm_graph_weights: {image: 0.5, image: 0.2}\n", 1)],
                         ids=["top-level", "flow-mapping"])
def test_a_key_given_twice_in_a_yaml_file_is_refused(tiny, tmp_path, capsys, text, line):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    assert main(_common(tiny, tmp_path / "saved") + [f"--config_files={path}"]) == 2
    key = re.search(r"(learning_rate|image)", text).group(1)
    assert re.fullmatch(rf"error: {re.escape(str(path))}: not valid YAML \(key '{key}' given twice: first at line 1, "
                        rf"again at line {line}, column \d+\)", _one_error(capsys.readouterr().err))


def test_a_dataset_yaml_with_a_key_twice_is_refused_naming_it(tmp_path, capsys):
    write_dataset(tmp_path, "twice", random_splits(N_USERS, N_ITEMS), features(["image"]), N_ITEMS,
                  extra=TOPK + "topk: [5, 10]\n")
    assert main(["--model=BPR", "--dataset=twice", f"--data_path={tmp_path}", "--use_gpu=False"]) == 2
    assert re.search(r"twice\.yaml: not valid YAML \(key 'topk' given twice", _one_error(capsys.readouterr().err))


@pytest.mark.parametrize("value, what", [(0.0, "all zero"), (3.0, "one constant row")])
def test_a_modality_without_information_is_warned_about(tmp_path, caplog, value, what):
    from toydata import build

    feats = features(["image", "text"])
    feats["image"][:] = value
    write_dataset(tmp_path, "flat", random_splits(N_USERS, N_ITEMS), feats, N_ITEMS)
    build(tmp_path, "flat", "VBPR")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "carries no" in r.getMessage()]
    assert len(warned) == 1 and warned[0].endswith(
        f"image_feat.npy: every item has the same image features ({what}): the image modality carries no information")
    caplog.clear()
    write_dataset(tmp_path, "fine", random_splits(N_USERS, N_ITEMS), features(["image", "text"]), N_ITEMS)
    build(tmp_path, "fine", "VBPR")
    assert not [r for r in caplog.records if "carries no" in r.getMessage()]
