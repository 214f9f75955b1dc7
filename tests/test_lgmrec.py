"""LGMRec against its released formulas: the hypergraph step, the whole forward pass written
densely, the contrastive term, stochastic training. What every multi-modal model keeps (shapes,
gradients, evaluation, seeds, leakage, refusals, learning) is tests/test_mm_models.py's."""

import pytest
import torch
import torch.nn.functional as F
from toydata import N_USERS, toy_model

from recbole_gtc.model.general_recommender.lgmrec import hypergraph_propagate, info_nce_sum


def _build(tmp_path, **overrides):
    return toy_model(tmp_path, "LGMRec", **dict({"train_batch_size": 64}, **overrides))


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_hypergraph_step_matches_the_dense_formula(n_layers):
    gen = torch.Generator().manual_seed(0)
    h_items = torch.softmax(torch.randn(12, 4, generator=gen, dtype=torch.float64), dim=1)
    h_users = torch.softmax(torch.randn(9, 4, generator=gen, dtype=torch.float64), dim=1)
    emb = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    users, items = hypergraph_propagate(h_items, h_users, emb, n_layers)
    item_item = h_items @ h_items.T  # items sharing hyperedges
    assert torch.allclose(items, torch.linalg.matrix_power(item_item, n_layers) @ emb)
    assert torch.allclose(users, h_users @ h_items.T @ torch.linalg.matrix_power(item_item, n_layers - 1) @ emb)


def _dense_forward(model, dataset, fresh=False):
    """The whole LGMRec forward pass (eval mode) written with dense float64 matrices; Gumbel noise
    from ``eval_noise_seed``, or (``fresh``) from the global RNG as the released code draws it."""
    users, items = model.training_pairs(dataset)
    n_u, n_i = model.n_users, model.n_items
    r = torch.zeros(n_u, n_i, dtype=torch.float64)
    r[users, items] = 1.0
    a = torch.zeros(n_u + n_i, n_u + n_i, dtype=torch.float64)
    a[:n_u, n_u:] = r
    a[n_u:, :n_u] = r.T
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.clamp(min=1) ** -0.5, torch.zeros_like(deg))
    a = inv[:, None] * a * inv[None, :]

    ego = torch.cat([model.user_embedding.weight, model.item_id_embedding.weight]).double()
    layers = [ego]
    for _ in range(model.n_ui_layers):
        layers.append(a @ layers[-1])
    cge = torch.stack(layers).mean(0)
    local = cge.clone()
    user_deg = r.sum(1, keepdim=True)
    gen = None if fresh else torch.Generator().manual_seed(int(model.eval_noise_seed))
    global_emb = 0
    for m in model.modalities:
        x = getattr(model, f"feat_{m}").double()
        f_items = x @ model.item_trs[m].double()
        f_users = torch.where(user_deg > 0, r @ f_items / user_deg.clamp(min=1), torch.zeros_like(r @ f_items))
        mge = torch.cat([f_users, f_items])
        for _ in range(model.n_mm_layers):
            mge = a @ mge
        local = local + F.normalize(mge, dim=1)
    for m in model.modalities:  # the model draws each modality's item then user noise, in order
        x = getattr(model, f"feat_{m}").double()
        logits = x @ model.hyper[m].double()
        g_items = -torch.empty(logits.shape).exponential_(generator=gen).log().double()
        g_users = -torch.empty(n_u, logits.shape[1]).exponential_(generator=gen).log().double()
        h_i = torch.softmax((logits + g_items) / model.tau, dim=1)
        h_u = torch.softmax((r @ logits + g_users) / model.tau, dim=1)
        h_i[0] = 0  # padding item and user join no hyperedge
        h_u[0] = 0
        propagation = torch.linalg.matrix_power(h_i @ h_i.T, model.n_hyper_layer - 1)
        e_items = torch.linalg.matrix_power(h_i @ h_i.T, model.n_hyper_layer) @ cge[n_u:]
        e_users = h_u @ h_i.T @ propagation @ cge[n_u:]
        global_emb = global_emb + torch.cat([e_users, e_items])
    out = local + model.alpha * F.normalize(global_emb, dim=1)
    return out[:n_u], out[n_u:]


@pytest.mark.parametrize("n_hyper_layer", [1, 2])
def test_forward_matches_a_dense_implementation_of_the_paper(tmp_path, n_hyper_layer):
    model, train_data = _build(tmp_path, n_hyper_layer=n_hyper_layer, hyper_num=5)
    model.eval()
    assert set(model.forward()["hyper"]) == set(model.modalities)  # one global embedding per modality
    users, items = _dense_forward(model, train_data.dataset)
    scores = model.full_sort_predict({"user_id": torch.arange(N_USERS + 1)})
    assert torch.allclose(scores.double(), users @ items.T, atol=1e-4)


def test_contrastive_term_is_the_summed_info_nce():
    gen = torch.Generator().manual_seed(1)
    anchor, candidates = torch.randn(5, 8, generator=gen), torch.randn(7, 8, generator=gen)
    positive = candidates[[0, 2, 2, 6, 1]]
    a, c = F.normalize(anchor, dim=1), F.normalize(candidates, dim=1)
    p = F.normalize(positive, dim=1)
    expected = -torch.log(torch.exp((a * p).sum(1) / 0.2) / torch.exp(a @ c.T / 0.2).sum(1)).sum()
    assert torch.allclose(info_nce_sum(anchor, positive, candidates, 0.2), expected, rtol=1e-5)


def test_training_is_stochastic(tmp_path):
    """Gumbel noise and hyperedge dropout in training; evaluation's determinism is the contract's."""
    model, _ = _build(tmp_path)
    model.train()
    assert not torch.equal(model.forward()["user"], model.forward()["user"])


def test_fresh_eval_noise_is_the_released_evaluation(tmp_path):
    """``eval_noise: fresh`` (MMRec's evaluation): no dropout, new Gumbel noise from the global RNG
    at every evaluation, so two evaluations of the same weights differ; ``fixed`` repeats itself."""
    model, train_data = _build(tmp_path, eval_noise="fresh")
    model.eval()
    everyone = {"user_id": torch.arange(N_USERS + 1)}
    torch.manual_seed(5)
    first = model.full_sort_predict(everyone)
    torch.manual_seed(5)
    users, items = _dense_forward(model, train_data.dataset, fresh=True)
    assert torch.allclose(first.double(), users @ items.T, atol=1e-4)
    model.train()  # a training step in between invalidates the cached evaluation
    model.eval()
    assert not torch.allclose(model.full_sort_predict(everyone), first, atol=1e-4)

    model.eval_noise = "fixed"
    model.train()
    model.eval()
    fixed = model.full_sort_predict(everyone)
    model.train()
    model.eval()
    torch.manual_seed(6)  # the global RNG plays no part
    assert torch.equal(model.full_sort_predict(everyone), fixed)
