"""Symile total correlation and pairwise InfoNCE (recbole_gtc/model/tc_loss.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_gtc.model.tc_loss import pairwise_infonce_loss, symile_loss


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


@pytest.mark.parametrize("chunk", [2, 100])  # checkpointed chunks and a single chunk
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
