"""How tight is the total-correlation bound? Planted Gaussian views with a closed-form TC.

**Views.** V views of width d. Coordinate k of all views, ``(x_1k, ..., x_Vk)``, is normal with
unit variances and every pairwise correlation rho (``C = (1 - rho) I + rho 11^T``), coordinates
independent: ``x_v = sqrt(rho) z + sqrt(1 - rho) e_v`` with a shared ``z`` and independent
``e_v``, all standard normal. Then

* total correlation ``TC = sum_v H(x_v) - H(x_1..x_V) = -d/2 log det C
  = -d/2 [(V - 1) log(1 - rho) + log(1 + (V - 1) rho)]`` (nats);
* each pair's mutual information is ``-d/2 log(1 - rho^2)``, their sum over the ``V(V-1)/2`` pairs
  is what the pairwise-InfoNCE ablation estimates (not TC: equal to second order in rho, larger
  for V = 3 at strong dependence, :func:`pairwise_mi_sum`).

**Estimates** at batch size n, each ``log n - cross-entropy`` (nats) averaged over repeats:

* ``symile_optimal``: Symile's loss (each view in turn the anchor, the other views' rows
  independently permuted for the negatives, :func:`~recbole_gtc.model.loss.symile_loss`'s
  construction) with the optimal critic, the log density ratio ``log p(x) / prod_v p(x_v)``: the
  tightest this bound can be at n. A lower bound on TC in expectation, and never above ``log n``.
* ``symile_gtc``: the same with GTC's critic ``s <a, b * c>`` on L2-normalised views, the scale
  ``s`` fitted on a separate sample (a grid), so the estimate stays a lower bound.
* ``pairwise_optimal`` / ``pairwise_gtc``: the sum over view pairs of the symmetric InfoNCE
  (:func:`~recbole_gtc.model.loss.pairwise_infonce_loss`), with the optimal pairwise critic or
  GTC's ``s <a, b>``; each pair's term is at most ``log n`` and a lower bound on that pair's MI.

:func:`bound_study` tabulates them over dependence strengths and batch sizes.
"""

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from recbole_gtc.model.loss import chunked_ce, pairwise_infonce_loss, symile_loss

#: Scales tried for GTC's critics (fitted on a separate sample).
SCALE_GRID = tuple(float(s) for s in np.geomspace(0.5, 200.0, 12))


def correlation_matrix(rho, n_views):
    """``C = (1 - rho) I + rho 11^T``, ``(V, V)`` float64."""
    if not -1.0 / (n_views - 1) < rho < 1.0:
        raise ValueError(f"rho must be in (-1/(V-1), 1) for a valid correlation, got {rho}")
    return (1.0 - rho) * np.eye(n_views) + rho * np.ones((n_views, n_views))


def gaussian_tc(rho, n_views=3, dim=8):
    """Closed-form total correlation of the planted views (nats)."""
    sign, logdet = np.linalg.slogdet(correlation_matrix(rho, n_views))
    return float(-0.5 * dim * logdet)


def pairwise_mi_sum(rho, n_views=3, dim=8):
    """Sum over the view pairs of their mutual information, ``-d/2 log(1 - rho^2)`` each (nats)."""
    return float(math.comb(n_views, 2) * -0.5 * dim * math.log(1.0 - rho ** 2))


def sample_views(n, rho, n_views=3, dim=8, generator=None):
    """``n`` draws of the views: a list of V float64 tensors ``(n, d)``."""
    z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return [math.sqrt(rho) * z + math.sqrt(1.0 - rho) * torch.randn(n, dim, generator=generator, dtype=torch.float64)
            for _ in range(n_views)]


def log_density_ratio(views, rho):
    """``log p(x) - sum_v log p(x_v)`` at each joint draw, ``(n,)``; its mean estimates TC."""
    n_views, dim = len(views), views[0].shape[1]
    c = correlation_matrix(rho, n_views)
    q = torch.from_numpy(np.linalg.inv(c) - np.eye(n_views))
    x = torch.stack(views, dim=1)  # (n, V, d)
    quad = torch.einsum("nvk,vw,nwk->n", x, q, x)
    return -0.5 * quad - 0.5 * dim * float(np.linalg.slogdet(c)[1])


def monte_carlo_tc(rho, n_views=3, dim=8, n=200_000, seed=0):
    """Monte-Carlo TC: mean and standard error of :func:`log_density_ratio` over ``n`` draws."""
    generator = torch.Generator().manual_seed(seed)
    values = log_density_ratio(sample_views(n, rho, n_views, dim, generator), rho)
    return float(values.mean()), float(values.std() / math.sqrt(n))


def _permutations(n, count, generator):
    return [torch.randperm(n, generator=generator) for _ in range(count)]


def symile_optimal(views, rho, generator, chunk_size=1024):
    """``log n`` minus Symile's loss with the optimal critic (mean over anchors), nats.

    Row-constant parts of the critic cancel in the softmax; what is left is linear in the anchor:
    ``L_ij = -sum_{w != a} Q_aw <a_i, o_j^w> - 1/2 sum_{w, w' != a} Q_ww' <o_j^w, o_j^w'>`` with
    ``Q = C^-1 - I`` and ``o_j`` the candidate (row i's own other views on the diagonal, the
    independently permuted rows elsewhere), computed as one fused cross-entropy.
    """
    n_views, n = len(views), views[0].shape[0]
    q = torch.from_numpy(np.linalg.inv(correlation_matrix(rho, n_views)) - np.eye(n_views))
    values = []
    one = torch.ones((), dtype=torch.float64)
    for a in range(n_views):
        others = [w for w in range(n_views) if w != a]
        perms = _permutations(n, len(others), generator)

        def candidates(rows):
            o = [views[w] if p is None else views[w][p] for w, p in zip(others, rows)]
            pairs = itertools.product(enumerate(others), repeat=2)
            bias = sum(q[w, w2] * (o[i] * o[j]).sum(1) for (i, w), (j, w2) in pairs)
            return torch.cat(o + [(-0.5 * bias).unsqueeze(1)], dim=1)

        anchor = torch.cat([-q[a, w] * views[a] for w in others] + [torch.ones(n, 1, dtype=torch.float64)], dim=1)
        loss = chunked_ce(anchor, candidates(perms), candidates([None] * len(others)), one, chunk_size)
        values.append(math.log(n) - float(loss))
    return float(np.mean(values))


def pairwise_optimal(views, rho, chunk_size=1024):
    """Sum over view pairs of ``log n`` minus the symmetric InfoNCE with the optimal pairwise
    critic ``rho/(1-rho^2) <a_i, b_j> - rho^2/(2(1-rho^2)) |b_j|^2`` (row constants dropped), nats."""
    n = views[0].shape[0]
    one = torch.ones((), dtype=torch.float64)
    gain, bias = rho / (1.0 - rho ** 2), -0.5 * rho ** 2 / (1.0 - rho ** 2)
    total = 0.0
    for x, y in itertools.combinations(views, 2):
        terms = []
        for a, b in ((x, y), (y, x)):
            anchor = torch.cat([gain * a, torch.ones(n, 1, dtype=torch.float64)], dim=1)
            cand = torch.cat([b, bias * (b * b).sum(1, keepdim=True)], dim=1)
            terms.append(float(chunked_ce(anchor, cand, cand, one, chunk_size)))
        total += math.log(n) - 0.5 * sum(terms)
    return total


def _gtc_value(kind, views, scale, generator, chunk_size=1024):
    n = views[0].shape[0]
    normed = [F.normalize(v, dim=1) for v in views]
    s = torch.tensor(float(scale), dtype=torch.float64)
    if kind == "symile":
        return math.log(n) - float(symile_loss(normed, s, chunk_size=chunk_size, generator=generator))
    return math.comb(len(views), 2) * math.log(n) - float(pairwise_infonce_loss(normed, s, chunk_size=chunk_size))


def fit_gtc_scale(kind, n, rho, n_views, dim, generator, grid=SCALE_GRID):
    """The scale of GTC's critic (``symile`` or ``pairwise``) with the highest bound on one
    sample of size n; the estimate itself is then made on other samples."""
    views = sample_views(n, rho, n_views, dim, generator)
    values = [_gtc_value(kind, views, s, generator) for s in grid]
    return grid[int(np.argmax(values))]


def bound_row(rho, n, n_views=3, dim=8, repeats=5, seed=0):
    """All estimates at one dependence strength and batch size: mean and standard error over
    ``repeats`` independent samples (the GTC critics' scales fitted on one more sample each)."""
    generator = torch.Generator().manual_seed(seed)
    scales = {kind: fit_gtc_scale(kind, n, rho, n_views, dim, generator) for kind in ("symile", "pairwise")}
    draws = {key: [] for key in ("symile_optimal", "symile_gtc", "pairwise_optimal", "pairwise_gtc")}
    for _ in range(repeats):
        views = sample_views(n, rho, n_views, dim, generator)
        draws["symile_optimal"].append(symile_optimal(views, rho, generator))
        draws["pairwise_optimal"].append(pairwise_optimal(views, rho))
        draws["symile_gtc"].append(_gtc_value("symile", views, scales["symile"], generator))
        draws["pairwise_gtc"].append(_gtc_value("pairwise", views, scales["pairwise"], generator))
    row = {"rho": rho, "n": n, "n_views": n_views, "dim": dim, "repeats": repeats,
           "tc_true": gaussian_tc(rho, n_views, dim), "pairwise_mi_true": pairwise_mi_sum(rho, n_views, dim),
           "log_n": math.log(n)}
    for key, values in draws.items():
        values = np.asarray(values)
        row[key] = float(values.mean())
        row[f"{key}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    row["scale_symile_gtc"], row["scale_pairwise_gtc"] = scales["symile"], scales["pairwise"]
    return row


def bound_study(rhos=(0.1, 0.3, 0.5, 0.7, 0.9), batch_sizes=(64, 256, 1024, 4096), n_views=3, dim=8, repeats=5,
                seed=0, progress=None):
    """:func:`bound_row` for every (rho, n); ``progress(i, total, rho, n)`` is called before each."""
    grid = list(itertools.product(rhos, batch_sizes))
    rows = []
    for i, (rho, n) in enumerate(grid, 1):
        if progress is not None:
            progress(i, len(grid), rho, n)
        rows.append(bound_row(rho, n, n_views, dim, repeats, seed=seed + i))
    return rows
