"""Sparse products with a prebuilt transpose (recbole_gtc/model/layers/sparse.py): the numbers of
torch's COO product and of the weighted ``embedding_bag`` they replace (to float rounding: the
kernels may group a row's sum differently), a CPU kernel with torch's own CSR product's numbers
(to float rounding as well: on some CPUs bit for bit, not on all),
and a cache that never serves a stale table."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency, propagate
from recbole_gtc.model.layers.sparse import (NeighbourProduct, csr_product, neighbour_matrices, sparse_mm, to_csr,
                                             transpose_csr)


def _graph(seed=0, n_users=60, n_items=40, nnz=500):
    rng = np.random.default_rng(seed)
    return normalized_bipartite_adjacency(rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz),
                                          n_users, n_items)


def _assert_rounding_close(got, want):
    # Sums of a few terms of magnitude <= ~5 in float32, added in another grouping: a few ulps
    # (2^-21 ~ 4.8e-7 at magnitude 4); 4e-6 leaves room for 8, far below any real error.
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=4e-6)


def _grad_of(fn, x, upstream):
    x = x.clone().requires_grad_()
    out = fn(x)
    out.backward(upstream)
    return out.detach(), x.grad


def test_symmetric_propagation_equals_the_coo_product():
    adj = _graph()
    csr = to_csr(adj)
    g = torch.Generator().manual_seed(1)
    x, upstream = torch.randn(100, 24, generator=g), torch.randn(100, 24, generator=g)
    want = _grad_of(lambda t: propagate(adj, t, n_layers=2), x, upstream)
    got = _grad_of(lambda t: propagate(csr, t, n_layers=2, adj_t=csr), x, upstream)
    _assert_rounding_close(got, want)
    # and both are the dense formula
    dense = adj.to_dense()
    expected = x + dense @ x + dense @ (dense @ x)
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)


def test_sparse_mm_backward_uses_the_transpose():
    g = torch.Generator().manual_seed(2)
    dense = torch.rand(7, 5, generator=g) * (torch.rand(7, 5, generator=g) < 0.4)  # not square, not symmetric
    coo = dense.to_sparse()
    x, upstream = torch.randn(5, 3, generator=g), torch.randn(7, 3, generator=g)
    out, grad = _grad_of(lambda t: sparse_mm(to_csr(coo), t, transpose_csr(coo)), x, upstream)
    torch.testing.assert_close(out, dense @ x)
    torch.testing.assert_close(grad, dense.t() @ upstream)
    assert torch.equal(transpose_csr(to_csr(coo)).to_dense(), dense.t())


def _table(seed, n_users=50, k=8):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n_users, (n_users, k), generator=g)  # repeats, as padding makes them
    weight = torch.rand(n_users, k, generator=g)
    weight[3] = 0  # a user with no neighbours: index 0, weight 0
    index[3] = 0
    return index, weight


def test_neighbour_product_equals_weighted_embedding_bag():
    index, weight = _table(0)
    g = torch.Generator().manual_seed(3)
    h, upstream = torch.randn(50, 16, generator=g), torch.randn(50, 16, generator=g)
    want = _grad_of(lambda t: F.embedding_bag(index, t, per_sample_weights=weight, mode="sum"), h, upstream)
    got = _grad_of(lambda t: NeighbourProduct()(t, index, weight), h, upstream)
    _assert_rounding_close(got, want)
    loop = torch.stack([sum(weight[u, n] * h[index[u, n]] for n in range(8)) for u in range(50)])
    torch.testing.assert_close(got[0], loop)


def test_neighbour_matrices_hold_the_table():
    index, weight = _table(1, n_users=6, k=3)
    matrix, matrix_t = neighbour_matrices(index, weight)
    dense = torch.zeros(6, 6)
    for u in range(6):
        for n in range(3):
            dense[u, index[u, n]] += weight[u, n]
    torch.testing.assert_close(matrix.to_dense(), dense)
    torch.testing.assert_close(matrix_t.to_dense(), dense.t())


def test_neighbour_product_rebuilds_after_a_redraw_or_an_in_place_load():
    product = NeighbourProduct()
    h = torch.randn(50, 4)
    index, weight = _table(0)
    first = product(h, index, weight)
    assert torch.equal(product(h, index, weight), first)  # cached, same table

    new_index, new_weight = _table(5)  # an epoch's redraw: new tensors
    expected = NeighbourProduct()(h, new_index, new_weight)
    assert not torch.equal(expected, first)
    assert torch.equal(product(h, new_index, new_weight), expected)

    # load_state_dict copies into the same tensors: the version counter must trigger a rebuild
    assert torch.equal(product(h, index, weight), first)
    index.copy_(new_index)
    weight.copy_(new_weight)
    assert torch.equal(product(h, index, weight), expected)
    weight.mul_(2.0)
    torch.testing.assert_close(product(h, index, weight), 2.0 * expected)


def test_csr_product_adds_what_torchs_csr_product_adds(monkeypatch):
    """Torch's CSR product is another library path (MKL on x86-64, whose kernel depends on the
    CPU): equal to ours within float32 rounding, and bit for bit on some CPUs only (an Intel
    Xeon, not an AMD EPYC). What holds everywhere: the same kernel on the same inputs gives
    the same bits, and both stay within rounding of the float64 product."""
    import recbole_gtc.model.layers.sparse as sparse

    calls = []
    bag = sparse.F.embedding_bag
    monkeypatch.setattr(sparse.F, "embedding_bag", lambda *a, **k: calls.append(1) or bag(*a, **k))
    g = torch.Generator().manual_seed(4)
    dense = torch.rand(90, 70, generator=g) * (torch.rand(90, 70, generator=g) < 0.1)
    dense[5] = 0  # an empty row
    index, weight = _table(2, n_users=70, k=6)  # repeated columns within a row, as padding makes them
    for matrix in (to_csr(dense.to_sparse()), transpose_csr(dense.to_sparse()), *neighbour_matrices(index, weight)):
        exact = matrix.to_dense().double()
        for width in (1, 8, 24, 32, 48, 65, 192):  # GTC's widths are V * d >= 48
            x = torch.randn(matrix.shape[1], width, generator=g)
            got = csr_product(matrix, x)
            assert torch.equal(csr_product(matrix, x), got)  # same kernel, same inputs: same bits
            _assert_rounding_close([got], [matrix @ x])
            _assert_rounding_close([got], [(exact @ x.double()).float()])
        x = torch.randn(matrix.shape[1], 96, generator=g)[:, ::2]  # not contiguous
        torch.testing.assert_close(csr_product(matrix, x), matrix.to_dense() @ x)
    assert len(calls) == 4 * (2 * 7 + 1)  # every product above went through the embedding_bag kernel
    assert torch.equal(csr_product(to_csr(dense.to_sparse()), torch.randn(70, 40, generator=g))[5], torch.zeros(40))
    assert torch.equal(csr_product(to_csr(torch.zeros(6, 4).to_sparse()), torch.randn(4, 40)), torch.zeros(6, 40))


def test_csr_product_leaves_other_inputs_to_torch(monkeypatch):
    import recbole_gtc.model.layers.sparse as sparse

    monkeypatch.setattr(sparse.F, "embedding_bag", lambda *a, **k: pytest.fail("embedding_bag used"))
    g = torch.Generator().manual_seed(5)
    dense = torch.rand(9, 7, generator=g) * (torch.rand(9, 7, generator=g) < 0.5)
    x = torch.randn(7, 40, generator=g)
    torch.testing.assert_close(csr_product(dense.to_sparse(), x), dense @ x)  # COO layout
    torch.testing.assert_close(csr_product(to_csr(dense.to_sparse()), x[:, 0]), dense @ x[:, 0])  # 1-D
    with pytest.raises(RuntimeError):  # mixed dtypes: torch's own error, never a silent cast
        csr_product(to_csr(dense.to_sparse()), x.double())
