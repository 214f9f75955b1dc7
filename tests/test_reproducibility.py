"""Determinism and leakage.

* The same seed on CPU gives identical validation and test metrics, for GTC and every
  baseline (RecBole's BPR and LightGCN, and each multi-modal baseline registered in
  ``recbole_gtc.utils._PLUGIN_MODELS``, picked up automatically).
* Nothing seen in training depends on the validation or test interactions: with them
  replaced by other pairs, GTC's graphs (user-item ``norm_adj``, item kNN graph, user
  co-interaction graph), the training sampler's negatives and the training losses of
  every model are bitwise unchanged.
"""

import importlib.util

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.quick_start import run_recbole_gtc
from recbole_gtc.utils import _PLUGIN_MODELS, get_model
from toydata import config_for, write_dataset

N_USERS, N_ITEMS, PER_USER = 40, 30, 10
MULTIMODAL_BASELINES = ("DRAGON", "FREEDOM", "LGMRec", "VBPR")
MODELS = ["GTC", "BPR", "LightGCN"] + [
    m for m in MULTIMODAL_BASELINES if m in _PLUGIN_MODELS and importlib.util.find_spec(_PLUGIN_MODELS[m])
]
#: Smaller than the defaults where a model's cost is dominated by its size (keeps the suite fast).
SMALL = {"GTC": {"embedding_size": 16}}


def _splits(poison=False, seed=0):
    """Every item is in training (so internal ids follow the training file alone); each user
    has 8 training items, 1 valid and 1 test item. ``poison`` swaps every valid and test pair
    for another pair of the same user that is in no split."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    spare = {}
    for u in range(N_USERS):
        items = rng.permutation(N_ITEMS)
        splits["train"] += [(u, int(i)) for i in items[:PER_USER - 2]]
        splits["valid"].append((u, int(items[PER_USER - 2])))
        splits["test"].append((u, int(items[PER_USER - 1])))
        spare[u] = [int(i) for i in items[PER_USER:PER_USER + 2]]
    for i in range(N_ITEMS):  # make sure every item has a training row
        if all(item != i for _, item in splits["train"]):
            splits["train"].append((i % N_USERS, i))
    if poison:
        splits["valid"] = [(u, spare[u][0]) for u, _ in splits["valid"]]
        splits["test"] = [(u, spare[u][1]) for u, _ in splits["test"]]
    return splits


def _features():
    rng = np.random.default_rng(7)
    return {"image": rng.normal(size=(N_ITEMS, 8)).astype(np.float32),
            "text": rng.normal(size=(N_ITEMS, 5)).astype(np.float32)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is ~70x faster than two on a busy 2-core machine
    (OpenMP workers spin); both runs of each comparison use the same setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two datasets ``mm`` with the same training split: clean, and valid/test poisoned."""
    out = {}
    for name, poison in (("clean", False), ("poisoned", True)):
        root = tmp_path_factory.mktemp(name)
        write_dataset(root, "mm", _splits(poison), _features(), N_ITEMS)
        out[name] = root
    assert _splits()["train"] == _splits(True)["train"]
    assert set(_splits()["test"]).isdisjoint(_splits(True)["test"])
    return out


# ----------------------------------------------------------------- same seed, same numbers


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_same_metrics_on_cpu(roots, tmp_path, model):
    config = {"data_path": str(roots["clean"]), "use_gpu": False, "state": "ERROR", "epochs": 2,
              "learning_rate": 0.01, "graph_cache_dir": None, "checkpoint_dir": str(tmp_path / "saved"),
              "topk": [5, 10], "valid_metric": "Recall@10", **SMALL.get(model, {})}
    first = run_recbole_gtc(model, "mm", config_dict=config)
    second = run_recbole_gtc(model, "mm", config_dict=config)
    assert first["best_valid_result"] == second["best_valid_result"]
    assert first["test_result"] == second["test_result"]
    assert first["test_result"]["recall@10"] > 0  # a real run, not an empty one


# ----------------------------------------------------------------- no leakage into training


def _prepared(root, model, protocol="mmrec", **overrides):
    overrides = dict(SMALL.get(model, {}), **overrides)
    config = config_for(root, "mm", model=model, eval_protocol=protocol, learning_rate=0.01, **overrides)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train


def _same_ids(a, b):
    for field in (a.uid_field, a.iid_field):
        assert list(a.field2id_token[field]) == list(b.field2id_token[field]), field


def _build(config, train, model):
    init_seed(config["seed"], config["reproducibility"])
    return get_model(model)(config, train.dataset)


def _dense(t):
    return t.to_dense() if t.layout != torch.strided else t


def test_gtc_graphs_do_not_see_valid_or_test(roots):
    (ca, da, ta), (cb, db, tb) = (_prepared(roots[k], "GTC") for k in ("clean", "poisoned"))
    _same_ids(da, db)
    a, b = _build(ca, ta, "GTC"), _build(cb, tb, "GTC")
    assert torch.equal(_dense(a.norm_adj), _dense(b.norm_adj))
    assert torch.equal(_dense(a.item_graph), _dense(b.item_graph))
    for x, y in zip(a.user_graph.neighbours, b.user_graph.neighbours):
        np.testing.assert_array_equal(x, y)
    assert torch.equal(a.user_nb_index, b.user_nb_index) and torch.equal(a.user_nb_weight, b.user_nb_weight)
    # Guard: a model built from all interactions (train + valid + test) would see the poison.
    leaky_a, leaky_b = _build(ca, _Full(da), "GTC"), _build(cb, _Full(db), "GTC")
    assert not torch.equal(_dense(leaky_a.norm_adj), _dense(leaky_b.norm_adj))
    assert any(not np.array_equal(x, y) for x, y in zip(leaky_a.user_graph.neighbours, leaky_b.user_graph.neighbours))


class _Full:
    """Stands in for a dataloader whose dataset is the whole, unsplit dataset."""

    def __init__(self, dataset):
        self.dataset = dataset


def _one_epoch(train):
    init_seed(2020, True)
    batches = []
    for batch in train:
        batches.append(torch.stack([batch[train.dataset.uid_field], batch[train.dataset.iid_field],
                                    batch[train.neg_item_id if hasattr(train, "neg_item_id") else "neg_item_id"]]))
    return torch.cat(batches, dim=1)


@pytest.mark.parametrize("protocol", ["mmrec", "recbole"])
def test_training_negatives_do_not_see_valid_or_test(roots, protocol):
    (_, da, ta), (_, db, tb) = (_prepared(roots[k], "BPR", protocol) for k in ("clean", "poisoned"))
    _same_ids(da, db)
    a, b = _one_epoch(ta), _one_epoch(tb)
    assert a.shape[1] == len(ta.dataset.inter_feat)
    assert torch.equal(a, b)
    # Guard: the negatives are random draws, so a different seed changes them.
    init_seed(1, True)
    assert not torch.equal(a, torch.cat([torch.stack([x[ta.dataset.uid_field], x[ta.dataset.iid_field],
                                                      x["neg_item_id"]]) for x in ta], dim=1))


def _training_losses(config, train, model_name, steps=None):
    model = _build(config, train, model_name)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    losses = []
    init_seed(config["seed"], config["reproducibility"])
    for epoch in range(2):
        if hasattr(model, "on_epoch_start"):
            model.on_epoch_start(epoch)
        for batch in train:
            loss = model.calculate_loss(batch)
            loss = sum(loss) if isinstance(loss, tuple) else loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("model", MODELS)
def test_training_losses_do_not_see_valid_or_test(roots, model):
    runs = []
    for key in ("clean", "poisoned"):
        config, dataset, train = _prepared(roots[key], model, train_batch_size=64)  # several steps per epoch
        runs.append((dataset, _training_losses(config, train, model)))
    _same_ids(runs[0][0], runs[1][0])
    assert len(runs[0][1]) > 2
    assert runs[0][1] == runs[1][1]
