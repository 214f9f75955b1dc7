"""Total-correlation loss (Symile) and the pairwise-InfoNCE ablation, computed in row chunks.

Both losses are a mean over rows of a softmax cross-entropy whose logits row i is
``s * <a_i, candidate_j>`` for ``j != i`` and a separate positive logit at ``j = i``.
Rows are processed ``chunk_size`` at a time: each chunk builds a ``(c, n)`` logits
block, overwrites its diagonal entries by index and reduces it with logsumexp.
When gradients are needed and there is more than one chunk, each chunk runs under
activation checkpointing, so autograd keeps no ``(c, n)`` block alive between
chunks and peak memory stays ``O(chunk_size * n)`` instead of ``O(n * n)``.
"""

import itertools

import torch
from torch.utils.checkpoint import checkpoint


def _chunk_ce_sum(anchor, rows, candidates, positives, scale):
    """Summed cross-entropy of one row chunk.

    Args:
        anchor (Tensor): ``(c, d)`` anchor rows ``a_i`` of the chunk.
        rows (LongTensor): ``(c,)`` the chunk rows' global indices (their targets).
        candidates (Tensor): ``(n, d)``; off-diagonal logits are ``s * <a_i, candidates_j>``.
        positives (Tensor): ``(c, d)``; the diagonal logit is ``s * <a_i, positives_i>``.
        scale (Tensor): scalar ``s``.

    Returns:
        Tensor: scalar, ``sum_i [logsumexp_j L_ij - L_ii]`` over the chunk.
    """
    logits = scale * (anchor @ candidates.T)  # (c, n)
    positive = scale * (anchor * positives).sum(-1)  # (c,)
    local = torch.arange(rows.numel(), device=rows.device)
    logits = logits.index_put((local, rows), positive)
    return (torch.logsumexp(logits, dim=1) - positive).sum()


def _chunked_ce(anchor, candidates, positives, scale, chunk_size):
    """Mean over the ``n`` rows of :func:`_chunk_ce_sum`, chunk by chunk; all inputs as there but full-length."""
    n = anchor.shape[0]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    use_checkpoint = torch.is_grad_enabled() and n > chunk_size
    total = anchor.new_zeros(())
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = torch.arange(start, stop, device=anchor.device)
        args = (anchor[start:stop], rows, candidates, positives[start:stop], scale)
        if use_checkpoint:
            total = total + checkpoint(_chunk_ce_sum, *args, use_reentrant=False)
        else:
            total = total + _chunk_ce_sum(*args)
    return total / n


def _check_views(views):
    if len(views) < 2:
        raise ValueError(f"need at least 2 views, got {len(views)}")
    shape = views[0].shape
    if any(v.shape != shape for v in views) or len(shape) != 2:
        raise ValueError(f"all views must share one (n, d) shape, got {[tuple(v.shape) for v in views]}")


def symile_loss(views, logit_scale, chunk_size=1024, generator=None, perms=None):
    """Symile total-correlation loss with "n" negatives (one permutation per other view).

    For each anchor view ``a``, with the other views ``b, c, ...`` in view order and
    an independent row permutation ``pi_b, pi_c, ...`` for each:
    ``Q_j = b_{pi_b(j)} * c_{pi_c(j)} * ...`` (elementwise), ``p_i = b_i * c_i * ...``,
    ``L_ij = s <a_i, Q_j>`` for ``j != i``, ``L_ii = s <a_i, p_i>``, and
    ``loss_a = mean_i CE(L_i, i)``. The result is the mean of ``loss_a`` over anchors.

    Args:
        views (list of Tensor): V >= 2 tensors ``(n, d)``, already L2-normalised.
        logit_scale (Tensor): scalar ``s`` (already exponentiated).
        chunk_size (int): rows of logits held at once.
        generator (torch.Generator, optional): draws the permutations when ``perms``
            is not given, anchor by anchor, other views in view order.
        perms (list of list of LongTensor, optional): ``perms[a][k]`` is the ``(n,)``
            permutation of the k-th other view of anchor ``a``.

    Returns:
        Tensor: scalar loss.
    """
    _check_views(views)
    n = views[0].shape[0]
    device = views[0].device
    losses = []
    for a, anchor in enumerate(views):
        others = [v for b, v in enumerate(views) if b != a]
        if perms is not None:
            anchor_perms = [p.to(device) for p in perms[a]]
        else:
            perm_device = generator.device if generator is not None else device
            anchor_perms = [
                torch.randperm(n, generator=generator, device=perm_device).to(device) for _ in others
            ]
        negatives = others[0][anchor_perms[0]]
        positives = others[0]
        for other, perm in zip(others[1:], anchor_perms[1:]):
            negatives = negatives * other[perm]
            positives = positives * other
        losses.append(_chunked_ce(anchor, negatives, positives, logit_scale, chunk_size))
    return torch.stack(losses).mean()


def pairwise_infonce_loss(views, logit_scale, chunk_size=1024):
    """Sum over unordered view pairs of the symmetric CLIP InfoNCE.

    For a pair ``(a, b)``: ``0.5 * (CE(s a b^T, diag) + CE(s b a^T, diag))``.

    Args:
        views (list of Tensor): V >= 2 tensors ``(n, d)``, already L2-normalised.
        logit_scale (Tensor): scalar ``s`` (already exponentiated).
        chunk_size (int): rows of logits held at once.

    Returns:
        Tensor: scalar loss.
    """
    _check_views(views)
    total = views[0].new_zeros(())
    for a, b in itertools.combinations(views, 2):
        total = total + 0.5 * (
            _chunked_ce(a, b, b, logit_scale, chunk_size) + _chunked_ce(b, a, a, logit_scale, chunk_size)
        )
    return total
