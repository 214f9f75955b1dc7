"""VBPR against its released formulas: content aligned with item ids, the score and the loss.
What every multi-modal model keeps (shapes, gradients, evaluation, seeds, leakage, refusals,
learning) is tests/test_mm_models.py's."""

import numpy as np
import pytest
import torch
from toydata import features, toy_model


def _build(tmp_path, modalities=("image", "text"), **overrides):
    # order_seed shuffles the files' lines, so internal ids differ from the feature rows.
    return toy_model(tmp_path, "VBPR", modalities, order_seed=3, **dict({"train_batch_size": 64}, **overrides))


@pytest.mark.parametrize("modalities", [("image",), ("image", "text"), ("image", "text", "audio")])
def test_content_is_aligned_with_item_ids(tmp_path, modalities):
    model, train_data = _build(tmp_path, modalities)
    raw = features(modalities)
    ds = train_data.dataset
    for token in ("0", "7", "29"):
        row = int(ds.token2id("item_id", token))
        assert torch.equal(model.item_content[row], torch.from_numpy(np.concatenate([raw[m][int(token)] for m in modalities])))


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
