"""eval_protocol: mmrec vs recbole, in RecBole's own dataloaders."""

import numpy as np
import pytest
from toydata import config_for, write_dataset

from recbole_gtc.data import create_dataset, data_preparation

N_ITEMS = 12
# user 0: train {0,1,2}, valid {3}, test {4}; items 9..11 never appear in training.
SPLITS = {
    "train": [(0, 0), (0, 1), (0, 2), (1, 2), (1, 5), (1, 6), (2, 7), (2, 8), (2, 0)],
    "valid": [(0, 3), (1, 7), (2, 9)],
    "test": [(0, 4), (1, 10), (2, 11)],
}


def _loaders(tmp_path, protocol):
    feats = {"image": np.eye(N_ITEMS, 4, dtype=np.float32) + 0.1}
    write_dataset(tmp_path, "p", SPLITS, feats, N_ITEMS, protocol=protocol)
    config = config_for(tmp_path, "p")
    dataset = create_dataset(config)
    return dataset, data_preparation(config, dataset)


def _tokens(dataset, ids):
    return {int(dataset.id2token(dataset.iid_field, int(i))) for i in ids}


@pytest.mark.parametrize("protocol, masked_at_test", [("mmrec", {0, 1, 2}), ("recbole", {0, 1, 2, 3})])
def test_test_ranking_masks(tmp_path, protocol, masked_at_test):
    dataset, (_, valid, test) = _loaders(tmp_path, protocol)
    user = dataset.token2id(dataset.uid_field, "u0")
    assert _tokens(dataset, test.uid2history_item[user]) == masked_at_test
    assert _tokens(dataset, test.uid2positive_item[user]) == {4}
    assert _tokens(dataset, valid.uid2history_item[user]) == {0, 1, 2}  # both protocols


@pytest.mark.parametrize("protocol", ["mmrec", "recbole"])
def test_training_negatives(tmp_path, protocol):
    dataset, (train, _, _) = _loaders(tmp_path, protocol)
    np.random.seed(0)
    sampler = train._sampler
    users = np.repeat(dataset.token2id(dataset.uid_field, ["u0", "u1", "u2"]), 200)
    negatives = _tokens(dataset, sampler.sample_by_user_ids(users, None, 1).numpy())
    train_items = {i for _, i in SPLITS["train"]}
    if protocol == "mmrec":
        assert negatives <= train_items
    else:
        assert negatives - train_items  # items never seen in training are drawn too


def test_unknown_protocol_is_an_error(tmp_path):
    from recbole_gtc.utils.errors import RecboleGTCError

    write_dataset(tmp_path, "p", SPLITS, {"image": np.ones((N_ITEMS, 2), np.float32)}, N_ITEMS, protocol="mmrec")
    config = config_for(tmp_path, "p", eval_protocol="MMRec-ish")
    with pytest.raises(RecboleGTCError, match="eval_protocol must be one of"):
        data_preparation(config, create_dataset(config))
