"""Determinism and leakage, end to end.

* The same seed on CPU gives identical validation and test metrics, for RecBole's BPR and
  LightGCN and every model registered in ``recbole_gtc.utils.utils._PLUGIN_MODELS`` (picked up
  automatically; a broken entry fails).
* Nothing seen in training depends on the validation or test interactions: with them
  replaced by other pairs, the training sampler's negatives and the training losses of
  every model are bitwise unchanged. (The multi-modal models' graphs: tests/test_mm_models.py.)
"""

import pytest
import torch
from recbole.utils import init_seed
from toydata import N_ITEMS, config_for, features, leak_splits, one_thread, write_dataset  # noqa: F401

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.quick_start.quick_start import run_recbole_gtc
from recbole_gtc.utils.utils import _PLUGIN_MODELS, get_model

MODELS = ["BPR", "LightGCN"] + sorted(_PLUGIN_MODELS)
#: Smaller than the defaults where a model's cost is dominated by its size (keeps the suite fast).
SMALL = {"GTC": {"embedding_size": 16}}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two datasets ``mm`` with the same training split: clean, and valid/test poisoned."""
    out = {}
    for name, poison in (("clean", False), ("poisoned", True)):
        root = tmp_path_factory.mktemp(name)
        write_dataset(root, "mm", leak_splits(poison=poison), features(("image", "text"), seed=7), N_ITEMS)
        out[name] = root
    assert leak_splits()["train"] == leak_splits(poison=True)["train"]
    assert set(leak_splits()["test"]).isdisjoint(leak_splits(poison=True)["test"])
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
