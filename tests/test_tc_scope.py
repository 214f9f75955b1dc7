"""GTC's TC scopes: ``sampled`` (batch rows against a fresh uniform candidate sample) next to ``all``."""

import math

import dense
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toydata import build, config_for, random_splits, write_dataset

from recbole_gtc.config.validation import validate_config
from recbole_gtc.utils.errors import RecboleGTCError

N_USERS, N_ITEMS = 40, 60


def _write(tmp_path):
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
             "text": rng.normal(size=(N_ITEMS, 5)).astype(np.float32)}
    write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), feats, N_ITEMS)


def _build(tmp_path, **overrides):
    _write(tmp_path)
    overrides.setdefault("train_batch_size", 16)
    return build(tmp_path, "mm", "GTC", user_graph_k=5, knn_k=4, **overrides)


def _batch_items(train):
    batch = next(iter(train))
    return torch.cat([batch["item_id"], batch["neg_item_id"]]), batch


def test_sampled_items_keep_the_batch_and_draw_real_items(tmp_path):
    model, train = _build(tmp_path, tc_scope="sampled", tc_candidates=10)
    items, _ = _batch_items(train)
    torch.manual_seed(3)
    cols, rows = model.tc_items(items)
    batch = torch.unique(items)
    assert torch.equal(cols[rows], batch)  # every row is a batch item, at its own column
    assert int(cols.min()) >= 1 and int(cols.max()) < model.n_items  # never the padding row 0
    assert len(cols) == len(torch.unique(cols))
    extra = set(cols.tolist()) - set(batch.tolist())
    assert len(batch) <= len(cols) <= len(batch) + 10 and len(extra) >= 1


def test_sampled_draw_is_seeded_and_fresh_each_step(tmp_path):
    model, train = _build(tmp_path, tc_scope="sampled", tc_candidates=8)
    items = torch.tensor([1, 2, 3])
    torch.manual_seed(7)
    first, second = model.tc_items(items)[0], model.tc_items(items)[0]
    torch.manual_seed(7)
    again = model.tc_items(items)[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_sampled_loss_equals_dense_formula_on_the_sampled_set(tmp_path):
    model, train = _build(tmp_path, tc_scope="sampled", tc_candidates=12)
    model.train()
    items, _ = _batch_items(train)
    torch.manual_seed(0)
    out = model.forward()
    torch.manual_seed(11)
    got = model.tc_loss(out, items)
    # Same draws in the same order: the candidate sample, then the Symile permutations.
    torch.manual_seed(11)
    cols, rows = model.tc_items(items)
    views = [F.normalize(out["id"][cols], dim=1)] + [F.normalize(out["denoised"][m][cols], dim=1)
                                                      for m in model.modalities]
    n = len(cols)
    perms = [[torch.randperm(n) for _ in range(len(views) - 1)] for _ in views]
    expected = dense.symile(views, model.logit_scale.exp(), perms, rows)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sampled_with_every_item_and_every_row_equals_all(tmp_path):
    """With N >= catalogue and all items in the batch, sampled and all see the same loss."""
    model, _ = _build(tmp_path, tc_scope="sampled", tc_candidates=10 ** 6)
    model.train()
    torch.manual_seed(0)
    out = model.forward()
    every = torch.arange(1, model.n_items)
    torch.manual_seed(5)
    sampled = model.tc_loss(out, every)
    model.tc_scope = "all"
    torch.manual_seed(5)
    torch.testing.assert_close(sampled, model.tc_loss(out, every))


def test_sampled_scope_trains(tmp_path):
    model, train = _build(tmp_path, tc_scope="sampled", tc_candidates=16)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, batch = _batch_items(train)
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        assert math.isfinite(loss.item())
    assert model.logit_scale.grad.abs() > 0


def test_bad_candidates_refused(tmp_path):
    # Refused by validation (GTC.config_rules) before a model exists; the model does not check again.
    _write(tmp_path)
    config = config_for(tmp_path, "mm", model="GTC", tc_scope="sampled", tc_candidates=0)
    with pytest.raises(RecboleGTCError, match=r"^tc_candidates=0: must be an integer >= 1$"):
        validate_config(config)
