"""Dense references for the formula tests: numpy references of the graphs the multi-modal
models share, and the total-correlation losses as whole logits matrices in torch.

Everything is ``I x I``, ``(U + I) x (U + I)`` or ``rows x candidates``: only for the toy
splits of the tests.
"""

import numpy as np
import torch
import torch.nn.functional as F


def item_rows(ds):
    """Feature row (the item token) of each real internal item id 1..I-1: ``(I - 1,)`` ints."""
    return np.array([int(token) for token in ds.field2id_token["item_id"][1:]])


def item_features(ds, raw):
    """``(I, D)`` raw features by internal item id; row 0 (padding) is zero."""
    x = np.zeros((len(ds.field2id_token["item_id"]), raw.shape[1]))
    x[1:] = raw[item_rows(ds)]
    return x


def training_graph(ds, n_users, n_items):
    """The binary training matrix ``R`` ``(U, I)`` and the symmetric-normalised user-item
    adjacency ``D^-1/2 A D^-1/2`` ``(U + I, U + I)`` (no self loops; isolated nodes stay zero)."""
    r = np.zeros((n_users, n_items))
    r[ds.inter_feat["user_id"].numpy(), ds.inter_feat["item_id"].numpy()] = 1.0
    a = np.block([[np.zeros((n_users, n_users)), r], [r.T, np.zeros((n_items, n_items))]])
    deg = a.sum(1)
    inv = np.where(deg > 0, np.maximum(deg, 1) ** -0.5, 0.0)
    return r, inv[:, None] * a * inv[None, :]


def knn_graph(x, k):
    """``(n, n)`` cosine top-k graph of the rows of ``x``, every kept edge ``1/k`` (rows of random
    features have no ties)."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = np.zeros((len(x), len(x)))
    np.put_along_axis(s, np.argsort(-(x @ x.T), axis=1)[:, :k], 1.0 / k, axis=1)
    return s


def item_graph(ds, raw, k, weights):
    """``S = sum_m weights[m] kNN_k(X_m)`` over the real items, ``(I, I)``; row and column 0 empty."""
    rows = item_rows(ds)
    s = np.zeros((len(rows) + 1, len(rows) + 1))
    s[1:, 1:] = sum(w * knn_graph(raw[m][rows], k) for m, w in weights.items())
    return s


def user_messages(r, h_users, k):
    """``m_u = sum_n softmax(counts)_un h_n`` over each user's top-k co-interaction neighbours
    (count descending, then id), ``(U, D)``; the toy splits give every real user k of them."""
    counts = r @ r.T
    np.fill_diagonal(counts, 0)
    message = np.zeros_like(h_users)
    for u in range(1, len(r)):
        nb = sorted(np.flatnonzero(counts[u]), key=lambda v: (-counts[u, v], v))[:k]
        assert len(nb) == k  # no padding draw on this split
        weight = np.exp(counts[u, nb] - counts[u, nb].max())
        message[u] = (weight / weight.sum()) @ h_users[nb]
    return message


def dragon_backbone(model, ds, raw, item_views, weights):
    """DRAGON's graphs and fusion (GTC's too) with ``n_layers = 2`` and ``n_mm_layers = 1``: per view
    v, ``x = rownorm([P_v ; item view])`` and ``R_v = x + A x + A^2 x``; items ``[R_1 ; ...] + S [R_1 ; ...]``;
    users ``[w_u1 R_1 ; ...]`` plus their neighbours' softmax(count)-weighted sum.

    Args:
        model (DRAGON): holds ``user_preference``, ``user_view_weight``, ``views``, ``knn_k``, ``user_graph_k``.
        raw (dict): modality -> ``(n_items - 1, D_m)`` features by item token.
        item_views (list of ndarray): one ``(I, d)`` per view, in ``model.views`` order.
        weights (dict): modality -> item-graph weight.

    Returns:
        (ndarray, ndarray): users ``(U, V*d)`` and items ``(I, V*d)``.
    """
    assert model.n_layers == 2 and model.n_mm_layers == 1
    n_u = model.n_users
    r, a_hat = training_graph(ds, n_u, model.n_items)
    w = model.user_view_weight.detach().numpy()
    users, items = [], []
    for j, (view, item_view) in enumerate(zip(model.views, item_views)):
        z = np.vstack([model.user_preference[view].detach().numpy(), item_view])
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        z = z + a_hat @ z + a_hat @ a_hat @ z
        users.append(w[:, j:j + 1] * z[:n_u])
        items.append(z[n_u:])
    users, items = np.hstack(users), np.hstack(items)
    items = items + item_graph(ds, raw, model.knn_k, weights) @ items
    return users + user_messages(r, users, model.user_graph_k), items


def cross_entropy(anchor, candidates, positives, scale, targets):
    """Whole ``(r, n)`` logits matrix ``scale * anchor @ candidates.T``, the positive
    ``scale * <anchor, positives>`` written at each row's target, then ``F.cross_entropy``."""
    logits = scale * anchor @ candidates.T
    positive = scale * (anchor * positives).sum(-1)
    mask = F.one_hot(targets, candidates.shape[0]).bool()
    logits = torch.where(mask, positive.unsqueeze(1), logits)
    return F.cross_entropy(logits, targets)


def symile(views, scale, perms, rows=None):
    """Symile over ``views`` (each ``(n, d)``): for each anchor view, the rows ``rows`` (default
    all n) against the element-wise product of the other views, permuted by ``perms[anchor]``
    (one permutation of ``n`` per other view) as negatives; row i's own column holds the
    positive. The mean over anchors."""
    n = views[0].shape[0]
    rows = torch.arange(n) if rows is None else rows
    losses = []
    for a, anchor in enumerate(views):
        others = [v for b, v in enumerate(views) if b != a]
        negatives, positives = others[0][perms[a][0]], others[0][rows]
        for other, perm in zip(others[1:], perms[a][1:]):
            negatives, positives = negatives * other[perm], positives * other[rows]
        losses.append(cross_entropy(anchor[rows], negatives, positives, scale, rows))
    return torch.stack(losses).mean()
