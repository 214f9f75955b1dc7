"""The similarity gate and the user-item graph, against direct computations."""

import numpy as np
import torch

from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency, propagate
from recbole_gtc.model.layers.gate import gate_scores, similarity_gate


def _views(n_views, n=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) for _ in range(n_views)]


def test_two_modalities_use_the_released_pairing():
    e, v, t = _views(3)
    out = similarity_gate([e, v, t], temperature=2.0)
    for i in range(e.shape[0]):
        s = torch.tensor([e[i] @ v[i], e[i] @ t[i], v[i] @ t[i]]) / 2.0
        w = torch.exp(s) / torch.exp(s).sum()
        expected = e[i] + w[0] * e[i] + w[1] * v[i] + w[2] * t[i]
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_general_rule_scores_mean_similarity_to_other_views():
    views = _views(4)  # ID + 3 modalities
    scores = gate_scores(views)
    for i in range(5):
        for k in range(4):
            others = [float(views[k][i] @ views[j][i]) for j in range(4) if j != k]
            assert abs(scores[i, k].item() - np.mean(others)) < 1e-5


def test_general_rule_is_symmetric_in_modalities():
    e, a, b, c = _views(4)
    assert torch.allclose(similarity_gate([e, a, b, c]), similarity_gate([e, c, a, b]), atol=1e-6)


def test_identical_views_give_equal_weights_for_every_m():
    x = _views(1)[0]
    for n_views in (2, 3, 4, 5):
        assert torch.allclose(similarity_gate([x] * n_views), 2 * x, atol=1e-5)


def test_single_modality_averages_the_two_views():
    e, v = _views(2)
    assert torch.allclose(similarity_gate([e, v]), e + 0.5 * (e + v), atol=1e-6)


def test_normalized_adjacency_matches_dense_and_ignores_duplicates():
    users = np.array([0, 0, 1, 2, 2, 2, 0])
    items = np.array([0, 1, 1, 0, 2, 3, 1])  # (0, 1) twice
    n_users, n_items = 4, 5  # user 3 and item 4 isolated
    adj = normalized_bipartite_adjacency(users, items, n_users, n_items).to_dense()
    a = np.zeros((n_users + n_items,) * 2)
    for u, i in set(zip(users, items)):
        a[u, n_users + i] = a[n_users + i, u] = 1
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0)
    expected = inv[:, None] * a * inv[None, :]
    assert np.allclose(adj.numpy(), expected, atol=1e-6)
    x = torch.randn(n_users + n_items, 3)
    dense = torch.from_numpy(expected).float()
    assert torch.allclose(propagate(adj.to_sparse(), x), x + dense @ x + dense @ dense @ x, atol=1e-5)
