"""Total-correlation loss (Symile) and the pairwise-InfoNCE ablation, fused and chunked.

Both losses are a mean over rows of a softmax cross-entropy whose logits row i is
``s * <a_i, candidate_j>`` for every candidate column ``j`` except the row's target
column ``t_i``, where a separate positive logit ``s * <a_i, p_i>`` takes its place.

:class:`FusedChunkedCE` evaluates it ``chunk_size`` rows at a time, so memory is
``O(chunk_size * n)``, never ``O(n * n)``. Because the loss is a scalar, its gradient
with respect to every input is the upstream scalar times a fixed tensor: when
gradients are needed the forward pass computes that tensor from the same logits
block it already holds (softmax, then two products with it), and backward only
rescales. Each block thus costs exactly three ``(c x d) x (d x n)``-sized matrix
products (logits, anchor gradient, candidate gradient) and a few elementwise passes;
no block is recomputed, copied or kept. The logsumexp and the sums run in float32
whatever the compute dtype, so the loss is safe under ``torch.autocast`` (bf16/fp16);
fp16 products over many items sum in column spans (:func:`_row_products`). The host reads
one value from the device per loss (whether the loose shift held), not one per chunk.
"""

import itertools

import torch
from torch.autograd.function import once_differentiable

from recbole_gtc.model.layers.precision import autocast_enabled, float32_region

# A row's exponentials are summed after shifting by an upper bound of its logits
# (no max pass over the block). Terms below float32's normal range (~1e-38, at most n
# of them) are lost; while the row sum stays above this they are < 1e-6 of it. Below
# it (in any row of any chunk) the loss is redone with the exact row maxima.
_MIN_SHIFTED_SUM = 1e-25


def _compute_dtype(device_type, dtype):
    """The dtype of the big matrix products: autocast's lower precision when autocast is on."""
    if autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def _put_targets(block, values, start, targets):
    """Write ``values`` (c,) at each row's target column of ``block`` (c, n), in place."""
    if targets is None:  # rows start..stop target columns start..stop: a diagonal view
        block.diagonal(offset=start).copy_(values)
    else:
        block[torch.arange(block.shape[0], device=block.device), targets] = values.to(block.dtype)


def _take_targets(block, start, targets):
    """Each row's entry at its target column, ``(c,)`` in the block's dtype (a copy)."""
    if targets is None:
        return block.diagonal(offset=start).clone()
    return block[torch.arange(block.shape[0], device=block.device), targets]


def _shifted_exp(sa1, q1, pos, start, targets, bound):
    """One chunk's ``exp(L - shift)`` block, with the shift folded into the product.

    Args:
        sa1 (Tensor): ``(c, d + 1)`` compute dtype, ``[s a_i, .]``; its last column is overwritten.
        q1 (Tensor): ``(n, d + 1)`` compute dtype, ``[q_j, 1]``.
        pos (Tensor): ``(c,)`` accumulation dtype, the positive logits.
        start (int): the chunk's first row (for diagonal targets).
        targets (LongTensor or None): ``(c,)`` target columns, ``None`` for the diagonal.
        bound (Tensor or None): ``(c,)`` an upper bound of each row's logits, used as the
            shift; ``None`` shifts by the exact row maximum (one more pass over the block).

    Returns:
        (Tensor, Tensor): the ``(c, n)`` block ``exp(L - shift)`` (targets hold the positive)
        and the shift actually applied ``(c,)`` in the accumulation dtype.
    """
    if bound is not None:
        # [s a_i, -shift_i] . [q_j, 1] = L_ij - shift_i: the product writes the shifted block directly.
        sa1[:, -1] = -bound
        applied = -sa1[:, -1].to(pos.dtype)  # the shift as rounded to the compute dtype
        block = sa1 @ q1.T
        _put_targets(block, pos - applied, start, targets)
    else:
        sa1[:, -1] = 0
        block = sa1 @ q1.T
        _put_targets(block, pos, start, targets)
        applied = block.amax(dim=1).to(pos.dtype)
        block.sub_(applied.to(block.dtype).unsqueeze(1))
    return block.exp_(), applied


#: fp16 products sum at most this many columns at once, then add the partial sums in float32:
#: with the exact row maximum every exp is at most 1 and every candidate entry at most 1 in
#: magnitude, so a partial sum stays below fp16's largest value (65,504). One product over
#: more columns overflowed from about 65k near-equal items (an infinite loss, wrong gradients).
_FP16_SPAN = 32768


def _row_products(block, q1, acc):
    """``block @ q1``, ``(c, n) x (n, d + 1)``, in the accumulation dtype ``acc``; in fp16 over
    column spans of at most :data:`_FP16_SPAN` whose partial sums add in ``acc``."""
    n = block.shape[1]
    if block.dtype != torch.float16 or n <= _FP16_SPAN:
        return (block @ q1).to(acc)
    out = (block[:, :_FP16_SPAN] @ q1[:_FP16_SPAN]).to(acc)
    for j in range(_FP16_SPAN, n, _FP16_SPAN):
        out += (block[:, j:j + _FP16_SPAN] @ q1[j:j + _FP16_SPAN]).to(acc)
    return out


def _column_products(block, a_c, inv, compute, acc):
    """``block^T (a_c * inv)``, ``(n, d)`` in ``acc``, the candidates' gradient of one chunk
    (low precision products). In fp16 the rows' factors ``inv`` (1 / row sum, down to 1/n)
    would leave fp16's normal range at large n, so the chunk's factors are multiplied by one
    power of two that puts the largest in [0.5, 1), divided out again in ``acc`` (exact)."""
    if compute != torch.float16:
        return (block.T @ (a_c * inv.unsqueeze(1)).to(compute)).to(acc)
    _, exponent = torch.frexp(inv.max())
    lift = torch.pow(2.0, -exponent.to(acc))
    rows = a_c * (inv * lift).unsqueeze(1)
    return (block.T @ rows.to(compute)).to(acc) / lift


class FusedChunkedCE(torch.autograd.Function):
    """``mean_i [logsumexp_j L_ij - L_i,t_i]`` with ``L_ij = s <a_i, q_j>`` and ``L_i,t_i = s <a_i, p_i>``.

    Forward inputs:
        anchor (Tensor): ``(r, d)`` rows ``a_i``.
        candidates (Tensor): ``(n, d)`` columns ``q_j``.
        positives (Tensor): ``(r, d)``; row i's positive logit is ``s <a_i, p_i>``.
        scale (Tensor): scalar ``s``.
        targets (LongTensor or None): ``(r,)`` target column of each row in ``[0, n)``;
            ``None`` means ``r == n`` and row i targets column i.
        chunk_size (int): rows per logits block.

    Returns a float32 (float64 for float64 inputs) scalar. Gradients for anchor,
    candidates, positives and scale; not twice differentiable.

    Per block of c rows: ``E = exp(L - shift)`` (one product, then one in-place pass),
    ``E [q, 1]`` gives both ``sum_j E_ij q_j`` and the row sums (second product), and
    ``E^T a`` the candidates' gradient (third product). The target entries are zeroed
    before the last two, so nothing is subtracted afterwards (no cancellation when
    the positive dominates).
    """

    @staticmethod
    def forward(ctx, anchor, candidates, positives, scale, targets, chunk_size):
        with_grad = any(ctx.needs_input_grad[:4])
        r, d = anchor.shape
        n = candidates.shape[0]
        device, device_type = anchor.device, anchor.device.type
        compute = _compute_dtype(device_type, anchor.dtype)
        if torch.float64 in (anchor.dtype, candidates.dtype, positives.dtype):
            compute = torch.float64
        acc = torch.float64 if compute == torch.float64 else torch.float32
        with float32_region(device_type):
            s = scale.detach().to(acc)
            a = anchor.detach().to(acc)
            p = positives.detach().to(acc)
            q = candidates.detach().to(acc)
            q1 = torch.cat([q, q.new_ones(n, 1)], dim=1).to(compute)  # (n, d + 1)
            sa1 = torch.cat([s * a, a.new_zeros(r, 1)], dim=1).to(compute)  # scale folded into the small factor
            pos_raw = (a * p).sum(-1)  # (r,) <a_i, p_i>
            pos = s * pos_raw
            # |L_ij| <= |s| |a_i| max_j |q_j|: a per-row shift that can never overflow exp.
            bound = torch.maximum(s.abs() * a.norm(dim=1) * q.norm(dim=1).max(), pos)
            exact_max = compute == torch.float16  # fp16's range is too small for a loose shift
            lse = torch.empty(r, dtype=acc, device=device)
            transposed = False
            if with_grad:
                grad_a = torch.empty(r, d, dtype=acc, device=device)
                # Float32 keeps the candidates' gradient transposed, (d, n): a^T E runs ~1.5x faster
                # than E^T a on CPU (measured); low precision products keep E^T a (faster there).
                transposed = compute == acc
                grad_q = torch.zeros((d, n) if transposed else (n, d), dtype=acc, device=device)
                coef = torch.empty(r, dtype=acc, device=device)
                grad_s = torch.zeros((), dtype=acc, device=device)

            def sweep(exact):
                """Every chunk, shifted by the loose ``bound`` or (``exact``) the exact row maxima.
                Returns whether every row's shifted sum stayed in range: a device tensor, which the
                caller reads once per loss (each read waits for the device), not once per chunk."""
                ok = torch.ones((), dtype=torch.bool, device=device)
                if with_grad:
                    grad_q.zero_()
                    grad_s.zero_()
                for start in range(0, r, chunk_size):
                    stop = min(start + chunk_size, r)
                    tgt = None if targets is None else targets[start:stop]
                    block, applied = _shifted_exp(
                        sa1[start:stop], q1, pos[start:stop], start, tgt, None if exact else bound[start:stop]
                    )
                    e_t = _take_targets(block, start, tgt).to(acc)  # (c,) the positive's exp
                    if with_grad:
                        _put_targets(block, torch.zeros_like(e_t), start, tgt)  # the target is not a q_j
                        # (c, d + 1): [sum_{j != t} E_ij q_j, sum_{j != t} E_ij]
                        out = _row_products(block, q1, acc)
                        total = out[:, d] + e_t
                    else:
                        total = block.sum(dim=1, dtype=acc)
                    if not exact:
                        ok = ok & (total >= _MIN_SHIFTED_SUM).all()
                    lse[start:stop] = applied + total.log()
                    if not with_grad:
                        continue
                    inv = 1.0 / total  # (c,) the softmax is E * inv, row-wise
                    rq = out[:, :d] * inv.unsqueeze(1)  # (c, d) sum_{j != t} softmax_ij q_j
                    a_c = a[start:stop]
                    # d loss_i / d L_ij = softmax_ij - [j = t_i]; chain through L_ij = s <a_i, q_j>.
                    if transposed:
                        grad_q.addmm_((a_c * inv.unsqueeze(1)).T, block)
                    else:
                        grad_q.add_(_column_products(block, a_c, inv, compute, acc))
                    c_t = e_t * inv - 1.0  # softmax at the target minus one
                    grad_a[start:stop] = rq + c_t.unsqueeze(1) * p[start:stop]
                    coef[start:stop] = c_t
                    grad_s.add_((a_c * rq).sum() + (c_t * pos_raw[start:stop]).sum())
                return ok

            # A loose shift can push all of a row's exps below float32's range: then the loss is
            # redone with the exact row maxima (rare: a huge logit scale).
            ok = sweep(exact=exact_max)
            if not exact_max and not bool(ok):
                sweep(exact=True)
            loss = (lse - pos).mean()
        if with_grad:
            if transposed:
                grad_q = grad_q.T
            # Per unit upstream gradient: d/da = s/r (rq + (p_t - 1) p), d/dq = s/r sum_i softmax_i a_i
            # (targets excluded), d/dp = s/r (p_t - 1) a, d/ds = 1/r sum_i (sum_j softmax_ij <a_i, q_j>
            # + (p_t - 1) <a_i, p_i>). The loss is a scalar, so backward only multiplies these.
            ctx.save_for_backward(grad_a * (s / r), grad_q * (s / r), coef.unsqueeze(1) * a * (s / r), grad_s / r)
            ctx.dtypes = (anchor.dtype, candidates.dtype, positives.dtype, scale.dtype)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grad_a, grad_q, grad_p, grad_s = ctx.saved_tensors
        g = grad_out.to(grad_a.dtype)
        outs = []
        for flag, grad, dtype in zip(ctx.needs_input_grad[:4], (grad_a, grad_q, grad_p, grad_s), ctx.dtypes):
            outs.append((grad * g).to(dtype) if flag else None)
        return (*outs, None, None)


def chunked_ce(anchor, candidates, positives, scale, chunk_size, targets=None):
    """Mean over rows of the cross-entropy of :class:`FusedChunkedCE` (see there for shapes)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if targets is None and anchor.shape[0] != candidates.shape[0]:
        raise ValueError("without targets, anchor and candidates need the same number of rows")
    return FusedChunkedCE.apply(anchor, candidates, positives, scale, targets, int(chunk_size))


def _check_views(views):
    if len(views) < 2:
        raise ValueError(f"need at least 2 views, got {len(views)}")
    shape = views[0].shape
    if any(v.shape != shape for v in views) or len(shape) != 2:
        raise ValueError(f"all views must share one (n, d) shape, got {[tuple(v.shape) for v in views]}")


def _check_rows(rows, n):
    if rows is None:
        return None
    rows = torch.as_tensor(rows, dtype=torch.long)
    if rows.dim() != 1 or rows.numel() == 0:
        raise ValueError(f"rows must be a non-empty 1-D index into {n} rows")
    low, high = torch.stack([rows.min(), rows.max()]).cpu().tolist()  # one read from the device
    if low < 0 or high >= n:
        raise ValueError(f"rows must be a non-empty 1-D index into {n} rows")
    return rows


def symile_loss(views, logit_scale, chunk_size=1024, generator=None, perms=None, rows=None):
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
        rows (LongTensor, optional): ``(r,)`` the rows i the mean runs over (each still
            against all n columns ``j``); default all n. With ``rows``, cost is ``O(r * n)``.

    Returns:
        Tensor: scalar loss.
    """
    _check_views(views)
    n = views[0].shape[0]
    device = views[0].device
    rows = _check_rows(rows, n)
    if rows is not None:
        rows = rows.to(device)
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
        for other, perm in zip(others[1:], anchor_perms[1:]):
            negatives = negatives * other[perm]
        picked = others if rows is None else [v[rows] for v in others]
        positives = picked[0]
        for other in picked[1:]:
            positives = positives * other
        rows_a = anchor if rows is None else anchor[rows]
        losses.append(chunked_ce(rows_a, negatives, positives, logit_scale, chunk_size, targets=rows))
    return torch.stack(losses).mean()


def pairwise_infonce_loss(views, logit_scale, chunk_size=1024, rows=None):
    """Sum over unordered view pairs of the symmetric CLIP InfoNCE.

    For a pair ``(a, b)``: ``0.5 * (CE(s a b^T, diag) + CE(s b a^T, diag))``.

    Args:
        views (list of Tensor): V >= 2 tensors ``(n, d)``, already L2-normalised.
        logit_scale (Tensor): scalar ``s`` (already exponentiated).
        chunk_size (int): rows of logits held at once.
        rows (LongTensor, optional): ``(r,)`` rows the means run over, each against all
            n columns (see :func:`symile_loss`); default all n.

    Returns:
        Tensor: scalar loss.
    """
    _check_views(views)
    rows = _check_rows(rows, views[0].shape[0])
    if rows is not None:
        rows = rows.to(views[0].device)

    def ce(x, y):
        if rows is None:
            return chunked_ce(x, y, y, logit_scale, chunk_size)
        return chunked_ce(x[rows], y, y[rows], logit_scale, chunk_size, targets=rows)

    total = None
    for a, b in itertools.combinations(views, 2):
        term = 0.5 * (ce(a, b) + ce(b, a))
        total = term if total is None else total + term
    return total
