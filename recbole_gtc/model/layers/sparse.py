"""Sparse x dense products for fixed graphs, with the transpose built once instead of every step.

GTC propagates its views over the same user-item graph at every training step, and over the
same user co-interaction table for a whole epoch. ``torch.sparse.mm`` with a COO matrix
(and a weighted ``embedding_bag``, the other way to gather neighbours) computes the input
gradient ``A^T dY`` by building and sorting ``A^T`` (or sorting the gathered indices) on
every backward. Here the matrix is held in CSR together with its transpose, made once, so
forward and backward are one CSR product each, which makes a GTC step faster than the COO /
``embedding_bag`` version (docs/performance.md). The numbers are those products' to float
rounding (tests/test_sparse.py): a kernel may group a row's sum differently, e.g. for widths
that are not a multiple of its vector length. On CPU each CSR product is then computed by
:func:`csr_product` (an ``embedding_bag`` kernel over the CSR arrays, a little faster again).
"""

import warnings

import torch
import torch.nn.functional as F


def _csr(crow, col, values, size):
    with warnings.catch_warnings():
        # torch calls its CSR layout "beta"; the products used here are the stable core of it.
        warnings.filterwarnings("ignore", message=r".*[Ss]parse CSR tensor support is in beta.*")
        warnings.filterwarnings("ignore", message=r".*[Ss]parse invariant checks.*")
        return torch.sparse_csr_tensor(crow, col, values, size)


def to_csr(matrix):
    """A sparse COO ``(N, M)`` matrix in CSR layout (coalesced first: duplicate entries summed)."""
    matrix = matrix.coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Ss]parse CSR tensor support is in beta.*")
        return matrix.to_sparse_csr()


def transpose_csr(matrix):
    """``A^T`` of a COO or CSR matrix, in CSR."""
    if matrix.layout == torch.sparse_csr:
        matrix = matrix.to_sparse_coo()
    return to_csr(matrix.t())


def csr_product(matrix, x):
    """``matrix @ x`` for a CSR ``matrix`` ``(N, M)`` and a dense ``x`` ``(M, D)``: ``(N, D)``.

    On CPU this is a weighted ``embedding_bag`` over the CSR arrays: row ``r``'s bag is its
    column ids, weighted by its values, summed in stored order. That adds the same terms in
    the same order as torch's CSR product (MKL's on x86-64), without its zero-filled output,
    second fill and operand copies, so a GTC step is a few percent faster
    (docs/performance.md). The sums agree within float rounding; bit for bit only where MKL's kernel
    rounds as ``embedding_bag`` does, which depends on the CPU (tests/test_sparse.py).
    Torch's own product for anything else: another device (CUDA), another layout, a 1-D
    ``x``, or ``x`` of another dtype than the matrix's values.
    """
    if matrix.layout != torch.sparse_csr or x.device.type != "cpu" or x.dim() != 2 or x.dtype != matrix.dtype:
        return matrix @ x
    values = matrix.values()
    return F.embedding_bag(matrix.col_indices(), x.contiguous(), matrix.crow_indices(), mode="sum",
                           per_sample_weights=values, include_last_offset=True)


class _SparseMM(torch.autograd.Function):
    """``y = A x`` with ``dx = A^T dy``; ``A`` and ``A^T`` are constant CSR matrices."""

    @staticmethod
    def forward(ctx, matrix, matrix_t, x):
        ctx.matrix_t = matrix_t
        return csr_product(matrix, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, csr_product(ctx.matrix_t, grad) if ctx.needs_input_grad[2] else None


def sparse_mm(matrix, x, matrix_t):
    """``matrix @ x`` for a constant sparse CSR ``matrix`` ``(N, M)`` with its transpose
    ``matrix_t`` ``(M, N)`` (the same tensor for a symmetric matrix); ``x`` is dense ``(M, D)``.

    Returns:
        Tensor: ``(N, D)``, differentiable in ``x`` only.
    """
    return _SparseMM.apply(matrix, matrix_t, x)


def neighbour_matrices(index, weight):
    """The matrix ``W`` of a fixed-width neighbour table, and ``W^T``, both CSR ``(U, U)``.

    Row ``u`` of ``W`` holds ``weight[u, n]`` at column ``index[u, n]`` (a repeated neighbour
    appears twice and counts twice), so ``W @ h`` is ``sum_n weight[u, n] * h[index[u, n]]``.
    ``W^T``'s entries are ordered by row, then by position in the table (a stable sort), the
    order in which ``embedding_bag``'s backward accumulates them.

    Args:
        index (LongTensor): ``(U, k)`` neighbour ids in ``[0, U)``.
        weight (Tensor): ``(U, k)``.
    """
    n_users, k = index.shape
    device = index.device
    col = index.reshape(-1)
    values = weight.reshape(-1)
    crow = torch.arange(0, n_users * k + 1, k, device=device)
    matrix = _csr(crow, col, values, (n_users, n_users))
    order = torch.argsort(col, stable=True)
    rows = torch.arange(n_users, device=device).repeat_interleave(k)
    crow_t = torch.zeros(n_users + 1, dtype=torch.long, device=device)
    crow_t[1:] = torch.bincount(col, minlength=n_users).cumsum(0)
    return matrix, _csr(crow_t, rows[order], values[order], (n_users, n_users))


class NeighbourProduct:
    """``m_u = sum_n weight[u, n] * h[index[u, n]]`` for an epoch's neighbour table.

    ``W`` and ``W^T`` (:func:`neighbour_matrices`) are rebuilt only when the table changes:
    the table tensors are new objects after a redraw or a move to another device, and an
    in-place copy (``load_state_dict``) bumps their version counter; either triggers a rebuild.
    """

    def __init__(self):
        self._table = None
        self._matrices = None

    def __call__(self, h, index, weight):
        """Args: h ``(U, D)``; index ``(U, k)``; weight ``(U, k)``. Returns ``(U, D)``."""
        weight = weight.to(h.dtype)
        table = (index, index._version, weight, weight._version)
        cached = self._table
        if cached is None or not (
            cached[0] is index and cached[1] == index._version and cached[2] is weight and cached[3] == weight._version
        ):
            self._matrices = neighbour_matrices(index, weight)
            self._table = table
        matrix, matrix_t = self._matrices
        return sparse_mm(matrix, h, matrix_t)

    def __getstate__(self):
        return {}  # a derived cache: copies and pickles rebuild it

    def __setstate__(self, state):
        self.__init__()
