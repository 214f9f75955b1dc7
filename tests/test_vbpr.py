"""VBPR: shapes, the score and loss against their formulas, content aligned with item ids,
deterministic never-stale evaluation, learning on planted data."""

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.model.vbpr import VBPR
from recbole_gtc.utils import RecboleGTCError
from planted import planted_roots, recall, train
from toydata import config_for, random_splits, write_dataset

N_USERS, N_ITEMS = 40, 30


def _features(names, seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(N_ITEMS, 5 + i)).astype(np.float32) for i, m in enumerate(names)}


def _build(tmp_path, modalities=("image", "text"), **overrides):
    if not (tmp_path / "mm").exists():
        # order_seed shuffles the files' lines, so internal ids differ from the feature rows.
        write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), _features(modalities), N_ITEMS, order_seed=3)
    overrides.setdefault("train_batch_size", 64)
    config = config_for(tmp_path, "mm", model="VBPR", **overrides)
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    torch.manual_seed(0)
    return VBPR(config, train_data.dataset), train_data


@pytest.mark.parametrize("modalities", [("image",), ("image", "text"), ("image", "text", "audio")])
def test_shapes_gradients_and_content_alignment(tmp_path, modalities):
    model, train_data = _build(tmp_path, modalities)
    users, items = model.forward()
    assert users.shape == (N_USERS + 1, 128) and items.shape == (N_ITEMS + 1, 128)
    raw = _features(modalities)
    ds = train_data.dataset
    for token in ("0", "7", "29"):
        row = int(ds.token2id("item_id", token))
        assert torch.equal(model.item_content[row], torch.from_numpy(np.concatenate([raw[m][int(token)] for m in modalities])))
    model.train()
    model.calculate_loss(next(iter(train_data))).backward()
    for name, p in model.named_parameters():
        if name == "content.bias":  # <theta_u, b> is the same for the positive and negative item
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_score_and_loss_follow_the_formulas(tmp_path):
    model, train_data = _build(tmp_path, reg_weight=0.5)
    batch = next(iter(train_data))
    u, i, j = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    d = model.embedding_size
    gamma_u, theta_u = model.user_factors[:, :d], model.user_factors[:, d:]
    visual = model.item_content @ model.content.weight.T + model.content.bias  # E f_i (+ bias)

    def score(users, items):
        return (gamma_u[users] * model.item_factors[items]).sum(1) + (theta_u[users] * visual[items]).sum(1)

    model.eval()
    assert torch.allclose(model.predict({"user_id": u, "item_id": i}), score(u, i), atol=1e-5)
    model.train()
    _, items = model.forward()
    reg = (model.user_factors[u].norm() + items[i].norm() + items[j].norm()) / len(u)
    expected = -torch.log(1e-10 + torch.sigmoid(score(u, i) - score(u, j))).mean() + 0.5 * reg
    assert torch.allclose(model.calculate_loss(batch), expected, rtol=1e-5)


def test_evaluation_is_deterministic_and_never_stale(tmp_path):
    model, train_data = _build(tmp_path)
    users = {"user_id": torch.arange(1, N_USERS + 1)}
    model.eval()
    first = model.full_sort_predict(users)
    model.train()
    model.eval()
    assert torch.equal(first, model.full_sort_predict(users))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.calculate_loss(next(iter(train_data))).backward()
    optimizer.step()
    model.eval()
    assert not torch.allclose(first, model.full_sort_predict(users))


def test_same_seed_same_training(tmp_path):
    def run():
        init_seed(999, True)
        model, train_data = _build(tmp_path)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for batch in train_data:
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()
        model.eval()
        return model.full_sort_predict({"user_id": torch.arange(1, N_USERS + 1)})

    assert torch.equal(run(), run())


def test_missing_key_fails_clearly(tmp_path):
    with pytest.raises(RecboleGTCError, match="reg_weight"):
        _build(tmp_path, reg_weight=None)


def test_content_helps_on_planted_data(tmp_path, tmp_path_factory):
    """Same interactions, same seed: real features beat features permuted across items, and both
    the popularity baseline."""
    roots = planted_roots(tmp_path_factory)
    real = recall(train("VBPR", roots["real"], tmp_path))
    permuted = recall(train("VBPR", roots["permuted"], tmp_path))
    pop = recall(train("Pop", roots["real"], tmp_path))
    assert real > permuted + 0.05 and real > pop + 0.05, (real, permuted, pop)
