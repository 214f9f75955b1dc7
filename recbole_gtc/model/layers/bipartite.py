"""The user-item graph of the training split and the weight-free propagation over it (docs/method.md, step 8)."""

import numpy as np
import scipy.sparse as sp
import torch

from recbole_gtc.model.layers.sparse import sparse_mm


def binary_matrix(users, items, n_users, n_items):
    """Binary interaction matrix ``R``: scipy CSR ``(n_users, n_items)`` float32 with sorted
    indices; duplicate (user, item) pairs count once. Every graph of the package starts here.

    Args:
        users, items (array-like or Tensor of int): ``(nnz,)`` interactions, ids ``< n``.
        n_users, n_items (int): id ranges.
    """
    if isinstance(users, torch.Tensor):
        users = users.cpu().numpy()
    if isinstance(items, torch.Tensor):
        items = items.cpu().numpy()
    users = np.asarray(users, dtype=np.int64).ravel()
    items = np.asarray(items, dtype=np.int64).ravel()
    r = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    r.sum_duplicates()
    r.data[:] = 1.0
    r.sort_indices()
    return r


def normalized_bipartite_adjacency(users, items, n_users, n_items):
    """Symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` of the user-item graph, no self loops.

    Args:
        users, items (np.ndarray of int): the TRAINING interactions (duplicates count once).
        n_users, n_items (int): node counts (ids ``< n``); nodes are users then items.

    Returns:
        torch.Tensor: sparse COO, ``(n_users + n_items, n_users + n_items)``, coalesced.
    """
    r = binary_matrix(users, items, n_users, n_items)
    adj = sp.bmat([[None, r], [r.T, None]], format="coo")
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    values = inv_sqrt[adj.row] * adj.data * inv_sqrt[adj.col]
    index = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))
    n = n_users + n_items
    return torch.sparse_coo_tensor(index, torch.from_numpy(values.astype(np.float32)), (n, n)).coalesce()


def propagate(adj, x, n_layers=2, adj_t=None):
    """``x + A x + A^2 x + ...`` (``n_layers`` hops, no weights, no normalisation of the sum).

    Args:
        adj (torch.Tensor): sparse ``(N, N)``: COO, or CSR together with ``adj_t``.
        x (torch.Tensor): ``(N, D)``.
        adj_t (torch.Tensor, optional): ``A^T`` in CSR (``adj`` itself for the symmetric
            normalised graph): products go through :func:`~recbole_gtc.model.layers.sparse.sparse_mm`,
            whose backward needs no per-step transpose.

    Returns:
        torch.Tensor: ``(N, D)``.
    """
    out, h = x, x
    for _ in range(n_layers):
        h = torch.sparse.mm(adj, h) if adj_t is None else sparse_mm(adj, h, adj_t)
        out = out + h
    return out
