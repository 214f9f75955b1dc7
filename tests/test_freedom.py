"""FREEDOM against its released formulas: degree-sensitive edge pruning (counts, probabilities,
normalisation), the frozen item graph and features, evaluation over the full graph, the whole
forward pass and loss written densely. What every multi-modal model keeps (shapes, gradients,
evaluation, seeds, leakage, refusals, learning) is tests/test_mm_models.py's."""

import itertools

import dense
import numpy as np
import pytest
import torch
from toydata import N_ITEMS, N_USERS, features, toy_model

from recbole_gtc.model.general_recommender.freedom import degree_sensitive_values, pruned_adjacency, sample_edges


def _build(tmp_path, **overrides):
    return toy_model(tmp_path, "FREEDOM", **dict({"train_batch_size": 64, "knn_k": 4}, **overrides))


def test_frozen_features_get_no_gradient(tmp_path):
    model, train_data = _build(tmp_path, train_features=False)
    model.calculate_loss(next(iter(train_data))).backward()
    assert all(p.grad is None for p in model.features.values())
    assert model.projections["image"].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- degree-sensitive pruning
# A star-shaped graph: user 0 has 4 items, users 1 and 2 one each, so 1/sqrt(d_u d_i) differs a lot.
STAR_USERS = torch.tensor([0, 0, 0, 0, 1, 2])
STAR_ITEMS = torch.tensor([0, 1, 2, 3, 0, 4])


def test_edge_values_are_inverse_sqrt_degree_products():
    values = degree_sensitive_values(STAR_USERS, STAR_ITEMS, 3, 5)
    deg_u, deg_i = [4, 1, 1], [2, 1, 1, 1, 1]
    expected = [1 / np.sqrt(deg_u[u] * deg_i[i]) for u, i in zip(STAR_USERS.tolist(), STAR_ITEMS.tolist())]
    assert np.allclose(values.numpy(), expected)


def _exact_inclusion(p, n_keep):
    """Inclusion probability of each edge under sequential weighted sampling without replacement."""
    p = np.asarray(p, dtype=np.float64)
    inclusion = np.zeros(len(p))
    for order in itertools.permutations(range(len(p)), n_keep):
        prob, left = 1.0, p.sum()
        for e in order:
            prob *= p[e] / left
            left -= p[e]
        inclusion[list(order)] += prob
    return inclusion


@pytest.mark.parametrize("n_keep", [1, 2, 4])
def test_pruning_samples_edges_by_degree_sensitive_probabilities(n_keep):
    values = degree_sensitive_values(STAR_USERS, STAR_ITEMS, 3, 5)
    generator = torch.Generator().manual_seed(0)
    draws = 20000
    counts = np.zeros(len(values))
    for _ in range(draws):
        keep = sample_edges(values, n_keep, generator)
        assert len(keep) == n_keep and len(set(keep.tolist())) == n_keep  # exact count, no duplicates
        counts[keep.numpy()] += 1
    expected = _exact_inclusion(values.numpy(), n_keep)
    assert np.allclose(counts.sum(), draws * n_keep)
    assert np.abs(counts / draws - expected).max() < 0.015, (counts / draws, expected)
    # The degree matters: uniform sampling would give n_keep / E everywhere.
    assert np.abs(expected - n_keep / len(values)).max() > 0.05


def test_pruned_graph_is_renormalised_by_kept_degrees():
    keep = torch.tensor([0, 1, 4])
    adj = pruned_adjacency(STAR_USERS, STAR_ITEMS, keep, 3, 5).to_dense().numpy()
    a = np.zeros((8, 8))
    for e in keep.tolist():
        u, i = STAR_USERS[e].item(), STAR_ITEMS[e].item() + 3
        a[u, i] = a[i, u] = 1
    deg = a.sum(1)
    inv = np.where(deg > 0, deg, 1) ** -0.5 * (deg > 0)
    assert np.allclose(adj, inv[:, None] * a * inv[None, :], atol=1e-6)


def test_model_prunes_the_expected_share_each_epoch(tmp_path):
    model, _ = _build(tmp_path, dropout=0.8)
    n_edges = len(model.edge_values)
    assert n_edges == N_USERS * 6  # distinct training edges (6 per user)
    drawn = []
    for epoch in range(3):
        model.on_epoch_start(epoch)
        adj = model.masked_adj.coalesce()
        # int(E * (1 - dropout)) as released (240 * (1 - 0.8) is 47.99..., so 47), both directions each.
        assert adj._nnz() == 2 * int(n_edges * (1 - 0.8)) == 2 * 47
        drawn.append(set(map(tuple, adj.indices().T.tolist())))
    assert drawn[0] != drawn[1]  # re-drawn every epoch
    model.on_epoch_start(0)
    assert set(map(tuple, model.masked_adj.coalesce().indices().T.tolist())) == drawn[0]  # (seed, epoch) fixes it
    off, _ = _build(tmp_path, dropout=0.0)
    assert off.masked_adj is off.norm_adj


def test_evaluation_uses_the_full_graph(tmp_path):
    model, _ = _build(tmp_path)
    users = {"user_id": torch.arange(1, N_USERS + 1)}
    model.eval()
    first = model.full_sort_predict(users)
    u, i = model.forward(model.norm_adj)
    assert torch.allclose(first, u[1:] @ i.T)
    model.on_epoch_start(5)  # a new pruned training graph does not change evaluation
    model.train()
    model.eval()
    assert torch.equal(first, model.full_sort_predict(users))


def test_item_graph_is_frozen_and_from_raw_features(tmp_path):
    model, train_data = _build(tmp_path)
    before = model.item_graph.to_dense().clone()
    assert before[0].abs().sum() == 0 and before[:, 0].abs().sum() == 0  # padding item
    assert torch.allclose(before[1:].sum(1), torch.ones(N_ITEMS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-1)
    model.calculate_loss(next(iter(train_data))).backward()
    optimizer.step()
    assert torch.equal(before, model.item_graph.to_dense())
    assert not any(p is model.item_graph for p in model.parameters())


# ---------------------------------------------------------------- the released computation, densely
def test_forward_and_loss_match_the_released_formulas(tmp_path):
    """Scores and loss equal MMRec's FREEDOM written out densely in numpy on the toy split:
    LightGCN mean over D^-1/2 A D^-1/2 of the training graph (layers 0..2), items plus
    S E_i with S = 0.1 kNN(image) + 0.9 kNN(text) of the raw features (entries 1/k), and
    BPR(u, i) + reg_weight * sum_m BPR(u, W_m x_m + b_m), natural log."""
    model, train_data = _build(tmp_path, dropout=0.0, reg_weight=0.5, n_ui_layers=2, n_mm_layers=1,
                               mm_image_weight=0.1)
    model = model.double()
    ds = train_data.dataset
    n_u = model.n_users
    _, a_hat = dense.training_graph(ds, n_u, model.n_items)
    e = np.vstack([model.user_embedding.weight.detach().numpy(), model.item_id_embedding.weight.detach().numpy()])
    layers = [e, a_hat @ e, a_hat @ a_hat @ e]
    mean = sum(layers) / 3
    raw = features(("image", "text"))
    s = dense.item_graph(ds, raw, model.knn_k, {"image": 0.1, "text": 0.9})
    users = mean[:n_u]
    items = mean[n_u:] + s @ model.item_id_embedding.weight.detach().numpy()

    got_u, got_i = model.forward(model.norm_adj)
    assert np.allclose(got_u.detach().numpy(), users, atol=1e-6)
    assert np.allclose(got_i.detach().numpy(), items, atol=1e-6)

    batch = next(iter(train_data))
    u, p, n = (batch[f].numpy() for f in ("user_id", "item_id", "neg_item_id"))

    def bpr(uu, pos, neg):
        return -np.mean(np.log(1 / (1 + np.exp(-((uu * pos).sum(1) - (uu * neg).sum(1))))))

    expected = bpr(users[u], items[p], items[n])
    for m in ("image", "text"):
        w = model.projections[m].weight.detach().numpy()
        b = model.projections[m].bias.detach().numpy()
        proj = dense.item_features(ds, raw[m]) @ w.T + b
        expected += 0.5 * bpr(users[u], proj[p], proj[n])
    assert np.isclose(model.calculate_loss(batch).item(), expected, atol=1e-9)
