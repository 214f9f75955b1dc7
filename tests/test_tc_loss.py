"""Symile total correlation and pairwise InfoNCE (recbole_gtc/model/loss.py).

The fused loss is checked against three independent evaluations: Python loops, a dense
``(n, n)`` logits matrix with ``F.cross_entropy``, and a copy of the previous chunked
implementation (index_put + activation checkpointing), for the loss, the gradients of
every view and of the logit scale.
"""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from dense import cross_entropy as _dense_ce
from dense import symile as _dense_symile
from torch.utils.checkpoint import checkpoint

from recbole_gtc.model import loss as tc_loss
from recbole_gtc.model.loss import chunked_ce, pairwise_infonce_loss, symile_loss


def _views(n_views, n=7, d=5, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    raw = [torch.randn(n, d, generator=g, requires_grad=requires_grad) for _ in range(n_views)]
    return raw, [F.normalize(v, dim=1) for v in raw]


def _perms(n_views, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randperm(n, generator=g) for _ in range(n_views - 1)] for _ in range(n_views)]


def _symile_loops(views, s, perms):
    """Direct evaluation with Python loops over anchors, rows i and columns j."""
    n_views, n = len(views), views[0].shape[0]
    total = 0.0
    for a in range(n_views):
        others = [b for b in range(n_views) if b != a]
        loss_a = 0.0
        for i in range(n):
            logits = []
            for j in range(n):
                if i == j:
                    prod = views[a][i].clone()
                    for b in others:
                        prod = prod * views[b][i]
                else:
                    prod = views[a][i].clone()
                    for kk, b in enumerate(others):
                        prod = prod * views[b][perms[a][kk][j]]
                logits.append(float(s) * prod.sum().item())
            m = max(logits)
            lse = m + math.log(sum(math.exp(x - m) for x in logits))
            loss_a += lse - logits[i]
        total += loss_a / n
    return total / n_views


@pytest.mark.parametrize("n_views", [3, 4])
def test_symile_equals_loop_evaluation(n_views):
    _, views = _views(n_views)
    perms = _perms(n_views, 7)
    s = torch.tensor(2.5)
    got = symile_loss(views, s, chunk_size=3, perms=perms)
    assert got.item() == pytest.approx(_symile_loops(views, s, perms), rel=1e-5)


def test_symile_independent_of_chunk_size_and_generator_deterministic():
    _, views = _views(3, n=9)
    s = torch.tensor(3.0)
    perms = _perms(3, 9)
    ref = symile_loss(views, s, chunk_size=1024, perms=perms)
    for chunk in (1, 3, 9, 100):
        torch.testing.assert_close(symile_loss(views, s, chunk_size=chunk, perms=perms), ref)
    a = symile_loss(views, s, chunk_size=2, generator=torch.Generator().manual_seed(5))
    b = symile_loss(views, s, chunk_size=9, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("chunk", [2, 100])  # several chunks and a single chunk
def test_symile_gradient_reaches_views_and_scale(chunk):
    raw, views = _views(3, n=8, requires_grad=True)
    theta = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = symile_loss(views, theta.exp(), chunk_size=chunk, generator=torch.Generator().manual_seed(0))
    loss.backward()
    for v in raw:
        assert v.grad is not None and v.grad.abs().sum() > 0
    assert theta.grad is not None and theta.grad.abs() > 0


def test_symile_gradients_independent_of_chunk_size():
    grads = []
    for chunk in (1, 4, 50):
        raw, views = _views(3, n=8, requires_grad=True)
        symile_loss(views, torch.tensor(4.0), chunk_size=chunk, perms=_perms(3, 8)).backward()
        grads.append(torch.cat([v.grad.flatten() for v in raw]))
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def test_aligned_views_give_lower_loss_than_random():
    n, d = 32, 16
    g = torch.Generator().manual_seed(0)
    # Aligned: views (x_i, x_i, 1) with x_i a random sign vector, so every positive
    # product sum_k x_ik^2 is maximal while permuted triples mostly cancel.
    signs = torch.randint(0, 2, (n, d), generator=g).float() * 2 - 1
    aligned = [signs / math.sqrt(d), signs / math.sqrt(d), torch.ones(n, d) / math.sqrt(d)]
    _, random_views = _views(3, n=n, d=d, seed=1)
    s = torch.tensor(100.0)
    gen = torch.Generator().manual_seed(0)
    low = symile_loss(aligned, s, generator=gen)
    high = symile_loss(random_views, s, generator=torch.Generator().manual_seed(0))
    assert low < high
    assert low < math.log(n)


def test_pairwise_infonce_equals_full_matrix_cross_entropy():
    _, views = _views(3, n=10, d=6)
    s = torch.tensor(5.0)
    target = torch.arange(10)
    expected = 0.0
    for a in range(3):
        for b in range(a + 1, 3):
            ab = s * views[a] @ views[b].T
            expected = expected + 0.5 * (F.cross_entropy(ab, target) + F.cross_entropy(ab.T, target))
    for chunk in (1, 3, 10, 64):
        torch.testing.assert_close(pairwise_infonce_loss(views, s, chunk_size=chunk), expected)


def test_rejects_bad_views():
    _, views = _views(2)
    with pytest.raises(ValueError):
        symile_loss(views[:1], torch.tensor(1.0))
    with pytest.raises(ValueError):
        pairwise_infonce_loss([views[0], views[1][:3]], torch.tensor(1.0))


# ---------------------------------------------------------------- references for the fused loss
def _reference_chunk_ce_sum(anchor, rows, candidates, positives, scale):
    """The previous implementation's chunk (index_put on the block), kept as a reference."""
    logits = scale * (anchor @ candidates.T)
    positive = scale * (anchor * positives).sum(-1)
    local = torch.arange(rows.numel())
    logits = logits.index_put((local, rows), positive)
    return (torch.logsumexp(logits, dim=1) - positive).sum()


def _reference_chunked_ce(anchor, candidates, positives, scale, chunk_size):
    """The previous implementation: checkpointed chunks, mean over the n rows."""
    n = anchor.shape[0]
    total = anchor.new_zeros(())
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        args = (anchor[start:stop], torch.arange(start, stop), candidates, positives[start:stop], scale)
        total = total + checkpoint(_reference_chunk_ce_sum, *args, use_reentrant=False)
    return total / n


def _reference_symile(views, scale, chunk_size, perms):
    losses = []
    for a, anchor in enumerate(views):
        others = [v for b, v in enumerate(views) if b != a]
        negatives, positives = others[0][perms[a][0]], others[0]
        for other, perm in zip(others[1:], perms[a][1:]):
            negatives, positives = negatives * other[perm], positives * other
        losses.append(_reference_chunked_ce(anchor, negatives, positives, scale, chunk_size))
    return torch.stack(losses).mean()


def _reference_pairwise(views, scale, chunk_size):
    total = views[0].new_zeros(())
    for a, b in itertools.combinations(views, 2):
        total = total + 0.5 * (
            _reference_chunked_ce(a, b, b, scale, chunk_size) + _reference_chunked_ce(b, a, a, scale, chunk_size)
        )
    return total


def _loss_and_grads(fn, n_views, n, d=6, scale=3.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    raw = [torch.randn(n, d, generator=g, dtype=dtype).requires_grad_() for _ in range(n_views)]
    theta = torch.tensor(math.log(scale), dtype=dtype, requires_grad=True)
    loss = fn([F.normalize(v, dim=1) for v in raw], theta.exp())
    loss.backward()
    return [loss.detach()] + [v.grad for v in raw] + [theta.grad]


def _assert_same(got, expected, atol=1e-5, rtol=1e-5):
    assert len(got) == len(expected)
    for x, y in zip(got, expected):
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


@pytest.mark.parametrize("n_views", [2, 3, 4])
@pytest.mark.parametrize("n, chunk", [(12, 4), (13, 5), (13, 64)])  # even chunks, uneven last chunk, one chunk
@pytest.mark.parametrize("scale", [1.0, 14.285714, 60.0])
def test_fused_symile_matches_previous_and_dense(n_views, n, chunk, scale):
    perms = _perms(n_views, n, seed=n_views + n)
    fused = _loss_and_grads(lambda v, s: symile_loss(v, s, chunk_size=chunk, perms=perms), n_views, n, scale=scale)
    previous = _loss_and_grads(lambda v, s: _reference_symile(v, s, chunk, perms), n_views, n, scale=scale)
    dense = _loss_and_grads(lambda v, s: _dense_symile(v, s, perms), n_views, n, scale=scale)
    _assert_same(fused, previous)
    _assert_same(fused, dense)


@pytest.mark.parametrize("n_views", [2, 3, 4])
@pytest.mark.parametrize("n, chunk", [(12, 4), (13, 5), (13, 64)])
def test_fused_pairwise_matches_previous(n_views, n, chunk):
    fused = _loss_and_grads(lambda v, s: pairwise_infonce_loss(v, s, chunk_size=chunk), n_views, n, scale=7.0)
    previous = _loss_and_grads(lambda v, s: _reference_pairwise(v, s, chunk), n_views, n, scale=7.0)
    _assert_same(fused, previous)


def test_fused_matches_previous_in_float64_to_rounding():
    perms = _perms(3, 11)

    def run(fn):
        return _loss_and_grads(fn, 3, 11, scale=20.0, dtype=torch.float64)

    _assert_same(run(lambda v, s: symile_loss(v, s, chunk_size=3, perms=perms)),
                 run(lambda v, s: _reference_symile(v, s, 3, perms)), atol=1e-12, rtol=1e-10)


def test_loose_shift_falls_back_to_the_exact_maximum():
    """At a huge scale every exp(L - bound) underflows float32; the chunk must be redone exactly."""
    perms = _perms(3, 10)
    fused = _loss_and_grads(lambda v, s: symile_loss(v, s, chunk_size=4, perms=perms), 3, 10, scale=3000.0)
    dense = _loss_and_grads(lambda v, s: _dense_symile(v, s, perms), 3, 10, scale=3000.0)
    assert all(torch.isfinite(x).all() for x in fused)
    _assert_same(fused, dense, atol=1e-4, rtol=1e-5)


def test_rows_subset_matches_dense_formula_on_the_subset():
    """tc_scope sampled: rows are a subset of the n columns, each row's target is its own column."""
    n = 15
    perms = _perms(3, n, seed=3)
    rows = torch.tensor([0, 4, 5, 11, 14])
    fused = _loss_and_grads(lambda v, s: symile_loss(v, s, chunk_size=2, perms=perms, rows=rows), 3, n, scale=9.0)
    dense = _loss_and_grads(lambda v, s: _dense_symile(v, s, perms, rows=rows), 3, n, scale=9.0)
    _assert_same(fused, dense)
    every = torch.arange(n)
    _assert_same(
        _loss_and_grads(lambda v, s: symile_loss(v, s, chunk_size=4, perms=perms, rows=every), 3, n),
        _loss_and_grads(lambda v, s: symile_loss(v, s, chunk_size=4, perms=perms), 3, n),
    )


def test_pairwise_rows_subset_matches_dense():
    n, rows = 9, torch.tensor([1, 2, 7])

    def dense(views, s):
        total = 0.0
        for a, b in itertools.combinations(views, 2):
            total = total + 0.5 * (_dense_ce(a[rows], b, b[rows], s, rows) + _dense_ce(b[rows], a, a[rows], s, rows))
        return total

    _assert_same(_loss_and_grads(lambda v, s: pairwise_infonce_loss(v, s, chunk_size=2, rows=rows), 3, n),
                 _loss_and_grads(dense, 3, n))


def test_fused_ce_gradient_with_respect_to_candidates_and_positives():
    """Anchor, candidates and positives as independent leaves (not tied through views)."""
    g = torch.Generator().manual_seed(4)
    a, q, p = (torch.randn(7, 5, generator=g, requires_grad=True) for _ in range(3))
    targets = torch.tensor([0, 3, 3, 1, 6, 2, 8])
    q9 = torch.randn(9, 5, generator=g, requires_grad=True)
    s = torch.tensor(2.0, requires_grad=True)
    for cand, tgt in ((q, None), (q9, targets)):
        leaves = [a, cand, p, s]
        chunked_ce(a, cand, p, s, 3, targets=tgt).backward()
        got = [x.grad.clone() for x in leaves]
        for x in leaves:
            x.grad = None
        _dense_ce(a, cand, p, s, torch.arange(7) if tgt is None else tgt).backward()
        _assert_same(got, [x.grad.clone() for x in leaves])
        for x in leaves:
            x.grad = None


def test_no_grad_forward_matches():
    _, views = _views(3, n=10)
    perms = _perms(3, 10)
    with torch.no_grad():
        got = symile_loss(views, torch.tensor(5.0), chunk_size=3, perms=perms)
    torch.testing.assert_close(got, _dense_symile(views, torch.tensor(5.0), perms))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_and_stays_close_to_float32(dtype):
    """Under CPU autocast the products run in low precision; logsumexp and sums stay float32."""
    perms = _perms(3, 64)

    def fn(views, s):
        return symile_loss(views, s, chunk_size=16, perms=perms)

    ref = _loss_and_grads(fn, 3, 64, d=32, scale=14.0)
    with torch.autocast("cpu", dtype=dtype):
        low = _loss_and_grads(fn, 3, 64, d=32, scale=14.0)
    assert low[0].dtype == torch.float32
    assert all(torch.isfinite(x).all() for x in low)
    assert abs(low[0].item() - ref[0].item()) < 1e-2 * ref[0].item()
    for x, y in zip(low[1:4], ref[1:4]):
        assert ((x - y).norm() / y.norm()).item() < 5e-2


def test_gradients_are_computed_once_not_by_recomputation(monkeypatch):
    """Three products per block and no re-run of the block in backward."""
    calls = []
    real = tc_loss._shifted_exp

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tc_loss, "_shifted_exp", counting)
    _, views = _views(3, n=10)
    views = [v.detach().requires_grad_() for v in views]
    loss = symile_loss(views, torch.tensor(5.0), chunk_size=4, generator=torch.Generator().manual_seed(0))
    forward_calls = len(calls)
    loss.backward()
    assert forward_calls == 3 * 3  # 3 anchors x 3 chunks
    assert len(calls) == forward_calls


def test_fp16_row_sums_over_many_near_equal_items_stay_finite():
    """fp16 products summed 70,000 exps near 1 into fp16 (largest value 65,504): an infinite loss
    and silently wrong gradients. The sums now add float32 partial sums of column spans."""
    n, d, r = 70_000, 8, 6
    g = torch.Generator().manual_seed(1)
    base = F.normalize(torch.randn(1, d, generator=g), dim=1)
    near = [F.normalize(base + 0.01 * torch.randn(m, d, generator=g), dim=1) for m in (r, n, r)]
    targets = torch.arange(r) * 7

    def run(dtype):
        a, q, p = (x.clone().requires_grad_() for x in near)
        s = torch.tensor(5.0, requires_grad=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = chunked_ce(a, q, p, s, 3, targets=targets)
        loss.backward()
        return loss.detach(), a.grad, q.grad, p.grad, s.grad

    ref, low = run(None), run(torch.float16)
    assert all(torch.isfinite(x).all() for x in low)
    assert abs(low[0].item() - ref[0].item()) < 1e-4 * ref[0].item()
    for x, y in zip(low[1:4], ref[1:4]):  # anchors, candidates, positives (d/ds cancels: ill-conditioned here)
        assert ((x - y).norm() / y.norm()).item() < 2e-2
