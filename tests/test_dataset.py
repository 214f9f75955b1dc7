"""MultiModalDataset: feature rows follow RecBole's token map, and bad files fail clearly."""

import numpy as np
import pytest
import torch
from toydata import config_for, random_splits, write_dataset

from recbole_gtc.data import create_dataset
from recbole_gtc.utils.errors import RecboleGTCError

N_USERS, N_ITEMS = 30, 25


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
            "text": rng.normal(size=(N_ITEMS, 3)).astype(np.float32)}


def _load(root, name, **overrides):
    return create_dataset(config_for(root, name, **overrides))


@pytest.mark.parametrize("order_seed", [None, 1, 2])
def test_each_item_gets_its_own_feature_row(tmp_path, order_seed):
    feats = _features()
    write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), feats, N_ITEMS, order_seed=order_seed)
    ds = _load(tmp_path, "mm")
    assert set(ds.modality_feats) == {"image", "text"}
    for m, raw in feats.items():
        table = ds.modality_feats[m]
        assert table.shape == (N_ITEMS + 1, raw.shape[1])
        assert torch.count_nonzero(table[0]) == 0  # padding
        for token in range(N_ITEMS):
            internal = ds.token2id(ds.iid_field, str(token))
            assert torch.equal(table[internal], torch.from_numpy(raw[token]))


def test_shuffled_files_really_change_internal_ids(tmp_path):
    """Guards the test above: shuffling must move items to other internal ids."""
    splits = random_splits(N_USERS, N_ITEMS)
    write_dataset(tmp_path / "a", "mm", splits, _features(), N_ITEMS)
    write_dataset(tmp_path / "b", "mm", splits, _features(), N_ITEMS, order_seed=3)
    a, b = _load(tmp_path / "a", "mm"), _load(tmp_path / "b", "mm")
    ids_a = [a.token2id(a.iid_field, str(t)) for t in range(N_ITEMS)]
    ids_b = [b.token2id(b.iid_field, str(t)) for t in range(N_ITEMS)]
    assert ids_a != ids_b


def _break(folder, modality, array):
    np.save(folder / f"{modality}_feat.npy", array)


@pytest.mark.parametrize(
    "make_bad, problem",
    [
        (lambda f: np.full((N_ITEMS, 6), np.nan, dtype=np.float32), "NaN or inf"),
        (lambda f: np.where(np.eye(N_ITEMS, 6) > 0, np.inf, 0).astype(np.float32), "NaN or inf"),
        (lambda f: np.zeros((N_ITEMS - 1, 6), dtype=np.float32), "rows but the dataset has"),
        (lambda f: np.zeros(N_ITEMS, dtype=np.float32), "2-D"),
        (lambda f: np.zeros((N_ITEMS, 6), dtype=np.int64), "float"),
    ],
)
def test_bad_feature_file_is_named_in_one_line(tmp_path, make_bad, problem):
    folder = write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), _features(), N_ITEMS)
    _break(tmp_path / "mm", "image", make_bad(folder))
    with pytest.raises(RecboleGTCError) as err:
        _load(tmp_path, "mm")
    message = str(err.value)
    assert "image_feat.npy" in message and problem in message and "\n" not in message


def test_missing_feature_file(tmp_path):
    write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), _features(), N_ITEMS)
    (tmp_path / "mm" / "text_feat.npy").unlink()
    with pytest.raises(RecboleGTCError, match="text_feat.npy: feature file not found"):
        _load(tmp_path, "mm")


def test_missing_dataset_points_to_the_import_command(tmp_path):
    with pytest.raises(RecboleGTCError, match="python -m recbole_gtc.prepare mmrec SRC --dataset baby"):
        _load(tmp_path, "baby")


def test_a_saved_recbole_dataset_is_never_loaded_implicitly(tmp_path):
    """RecBole would load <checkpoint_dir>/<name>-Dataset.pth whenever it exists (keyed by
    dataset keys only): a stale copy after the files changed, or a truncated one, would
    be trusted. Here the files are always read."""
    splits = random_splits(N_USERS, N_ITEMS)
    write_dataset(tmp_path, "plain", splits, {}, N_ITEMS)  # no modalities: RecBole's Dataset
    first = _load(tmp_path, "plain", save_dataset=True)
    (saved,) = (tmp_path / "saved").glob("plain-Dataset.pth")
    assert first.inter_num == N_USERS * 8

    splits["train"].append((0, N_ITEMS - 1) if (0, N_ITEMS - 1) not in splits["train"] else (1, N_ITEMS - 1))
    write_dataset(tmp_path, "plain", splits, {}, N_ITEMS)
    assert _load(tmp_path, "plain").inter_num == N_USERS * 8 + 1  # the changed files, not the pickle

    saved.write_bytes(saved.read_bytes()[:100])  # truncated
    assert _load(tmp_path, "plain").inter_num == N_USERS * 8 + 1


def test_an_unreadable_explicit_dataset_save_path_is_one_line(tmp_path):
    write_dataset(tmp_path, "plain", random_splits(N_USERS, N_ITEMS), {}, N_ITEMS)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x04truncated")
    with pytest.raises(RecboleGTCError, match=r"bad.pth: saved dataset cannot be read .*; delete it or unset"):
        _load(tmp_path, "plain", dataset_save_path=str(bad))
