"""``--recommend``: top-K items per user from a run's checkpoint, checked against a ranking
computed here from the checkpoint's weights and the training split's atomic file."""

import csv
import io
import os

import numpy as np
import pytest
import torch

from recbole_gtc.cli import main
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.quick_start.recommend import top_k

MODELS = ("BPR", "GTC")


def _overrides(tiny, checkpoint_dir):
    return {"data_path": tiny, "epochs": 2, "stopping_step": 100, "learning_rate": 0.01, "state": "WARNING",
            "checkpoint_dir": str(checkpoint_dir), "graph_cache_dir": None}


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """model -> (run folder, the overrides it was trained with)."""
    saved = tmp_path_factory.mktemp("saved")
    out = {}
    for model in MODELS:
        overrides = _overrides(tiny, saved)
        out[model] = (run_recbole_gtc(model, "tiny", config_dict=overrides)["run_dir"], overrides)
    return out


def _train_pairs(tiny):
    """External (user, item) tokens of the training split, read from the atomic file."""
    pairs = {}
    with open(os.path.join(tiny, "tiny", "tiny.train.inter")) as handle:
        next(handle)
        for line in handle:
            user, item = line.rstrip("\n").split("\t")[:2]
            pairs.setdefault(user, set()).add(item)
    return pairs


def _reference(model_name, run_dir, overrides, users, k):
    """user -> [(item token, score)] best first: the checkpoint's weights in a model built here
    under another torch seed, all users scored in one call, training items (from the atomic
    file) and padding excluded, a stable numpy sort (ties to the smaller internal id)."""
    from recbole.data.interaction import Interaction

    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.utils.utils import get_model

    config = load_config(model_name, "tiny", config_dict=overrides)
    train = data_preparation(config, create_dataset(config))[0].dataset
    torch.manual_seed(12345)  # initial weights other than the run's: the checkpoint must replace them all
    model = get_model(model_name)(config, train)
    state = torch.load(os.path.join(run_dir, "best.pth"), weights_only=False)  # our own test output
    model.load_state_dict(state["state_dict"])
    model.eval()
    all_users = torch.arange(1, train.user_num)
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({train.uid_field: all_users}))
    scores = scores.reshape(len(all_users), train.item_num).double().numpy()
    user_id, item_id = train.field2token_id[train.uid_field], train.field2token_id[train.iid_field]
    item_token = train.field2id_token[train.iid_field]
    seen = _train_pairs(os.path.dirname(config["data_path"]))
    ranking = {}
    for user in users:
        s = scores[user_id[user] - 1].copy()
        s[0] = -np.inf
        s[[item_id[i] for i in seen[user]]] = -np.inf
        order = np.argsort(-s, kind="stable")[:k]
        ranking[user] = [(item_token[j], s[j]) for j in order]
    return ranking


def _rows(text):
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["user", "rank", "item", "score"]
    return [(u, int(r), i, float(s)) for u, r, i, s in lines[1:]]


def _recommend(capsys, *args):
    code = main(["--recommend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("model_name", MODELS)
def test_top_k_equals_the_ranking_computed_from_the_checkpoint(runs, tiny, capsys, model_name):
    run_dir, overrides = runs[model_name]
    seen = _train_pairs(tiny)
    users = sorted(seen, key=int)  # all 150: several scoring batches (eval_batch_size // n_items users)
    k = 10
    code, out, err = _recommend(capsys, "--checkpoint", run_dir, "--users", ",".join(users), "--topk", str(k))
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == k * len(users)
    reference = _reference(model_name, run_dir, overrides, users, k)
    for n, user in enumerate(users):
        mine = rows[n * k:(n + 1) * k]
        assert [r[0] for r in mine] == [user] * k and [r[1] for r in mine] == list(range(1, k + 1))
        items, scores = [r[2] for r in mine], [r[3] for r in mine]
        assert len(set(items)) == k and not set(items) & seen[user]
        assert all(a >= b for a, b in zip(scores, scores[1:]))
        assert items == [item for item, _ in reference[user]], user
        np.testing.assert_allclose(scores, [s for _, s in reference[user]], rtol=1e-5, atol=1e-6)


def test_out_writes_the_printed_rows_and_a_run_folder_or_its_best_pth_agree(runs, tmp_path, capsys):
    run_dir = runs["BPR"][0]
    args = ["--users", "3,0,17", "--topk", "5"]
    code, printed, _ = _recommend(capsys, "--checkpoint", run_dir, *args)
    assert code == 0
    assert [r[0] for r in _rows(printed)] == ["3"] * 5 + ["0"] * 5 + ["17"] * 5  # users in the order given
    target = tmp_path / "out" / "recs.csv"
    target.parent.mkdir()
    target.write_text("an older file, replaced\n")
    code, out, err = _recommend(capsys, f"--checkpoint={os.path.join(run_dir, 'best.pth')}", *args, "--out", str(target))
    assert code == 0 and out == ""
    assert err.strip() == f"wrote 15 recommendations for 3 user(s) to {target}"
    assert target.read_text() == printed
    assert os.listdir(tmp_path / "out") == ["recs.csv"]  # no temporary file left
    code, _, err = _recommend(capsys, "--checkpoint", run_dir, *args, "--out", str(tmp_path / "out"))
    assert code == 2 and err == f"error: {tmp_path / 'out'}: --out is a folder; name the CSV file to write\n"


def test_unknown_user_is_one_error_line_and_nothing_is_written(runs, tmp_path, capsys):
    target = tmp_path / "recs.csv"
    code, out, err = _recommend(capsys, "--checkpoint", runs["BPR"][0], "--users", "3,nobody,[PAD]",
                                "--out", str(target))
    assert code == 2 and out == ""
    assert err == "error: --users: unknown user(s) in dataset 'tiny': nobody, [PAD]\n"
    assert not os.path.exists(target)


def test_missing_checkpoint_and_bad_arguments(runs, tmp_path, capsys):
    missing = tmp_path / "nope" / "best.pth"
    assert _recommend(capsys, "--checkpoint", str(missing), "--users", "3") == (
        2, "", f"error: {missing}: checkpoint not found\n")
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    code, _, err = _recommend(capsys, "--checkpoint", str(empty_run), "--users", "3")
    assert code == 2 and err.startswith(f"error: {empty_run}: no best.pth in this run folder")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    code, _, err = _recommend(capsys, "--checkpoint", str(garbage), "--users", "3")
    assert code == 2 and err.startswith(f"error: {garbage}: unreadable checkpoint (") and len(err.splitlines()) == 1
    resume_state = tmp_path / "last.pth"
    torch.save({"format": 1, "state_dict": {}, "rng": {}}, resume_state)
    code, _, err = _recommend(capsys, "--checkpoint", str(resume_state), "--users", "3")
    assert code == 2 and err == (f"error: {resume_state}: not a model checkpoint: no 'config' and 'state_dict' "
                                 "(last.pth is a resume state; use the run's best.pth)\n")
    run_dir = runs["BPR"][0]
    code, _, err = _recommend(capsys, "--checkpoint", run_dir, "--users", " , ")
    assert code == 2 and err.startswith("error: --users: no user token given")
    code, _, err = _recommend(capsys, "--checkpoint", run_dir, "--users", "3", "--topk", "81")
    assert code == 2 and err == "error: --topk must be between 1 and the number of items (80), got 81\n"
    code, _, err = _recommend(capsys, "--checkpoint", run_dir, "--users", "3", "--topk", "0")
    assert code == 2 and "--topk must be a positive integer, got 0" in err
    code, _, err = _recommend(capsys, "--checkpoint", run_dir)
    assert code == 2 and "the following arguments are required: --users" in err


def test_a_moved_dataset_names_data_path_and_data_path_finds_it(runs, tiny, tmp_path, capsys):
    run_dir = runs["BPR"][0]
    state = torch.load(os.path.join(run_dir, "best.pth"), weights_only=False)  # our own test output
    gone = str(tmp_path / "moved-away" / "tiny")
    state["config"]["data_path"] = gone
    moved = tmp_path / "best.pth"
    torch.save(state, moved)
    code, out, err = _recommend(capsys, "--checkpoint", str(moved), "--users", "3")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {gone}: dataset folder of checkpoint {moved} not found") and "--data_path" in err

    code, expected, _ = _recommend(capsys, "--checkpoint", run_dir, "--users", "3,5")
    for data_path in (tiny, os.path.join(tiny, "tiny")):  # the parent folder, as in training, or the folder itself
        code, out, err = _recommend(capsys, "--checkpoint", str(moved), "--users", "3,5", "--data_path", data_path)
        assert code == 0, err
        assert out == expected
    code, _, err = _recommend(capsys, "--checkpoint", str(moved), "--users", "3", "--data_path", str(tmp_path))
    assert code == 2 and err == f"error: {tmp_path}: --data_path holds no dataset folder 'tiny'\n"


def test_a_user_with_fewer_unseen_items_than_k_gets_them_all(runs, tiny, capsys):
    seen = _train_pairs(tiny)["0"]
    code, out, err = _recommend(capsys, "--checkpoint", runs["GTC"][0], "--users", "0", "--topk", "80")
    assert code == 0
    items = [r[2] for r in _rows(out)]
    assert sorted(items, key=int) == sorted(set(map(str, range(80))) - seen, key=int)
    assert err == f"note: fewer than 80 items outside their training interactions for 0 ({80 - len(seen)})\n"


def test_ties_go_to_the_smaller_internal_id():
    ninf = float("-inf")
    scores = torch.tensor([[ninf, 2.0, 5.0, 2.0, ninf, 5.0, 2.0],
                           [ninf, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    ids, values = top_k(scores, 4)
    assert ids.tolist() == [[2, 5, 1, 3], [1, 2, 3, 4]]
    assert values.tolist() == [[5.0, 5.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]]
