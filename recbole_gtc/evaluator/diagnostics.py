"""Estimators of the diagnostics (docs/diagnostics.md names each one and its bias).

* :func:`normalised_entropy` and :func:`view_score_spread`: the **modality balance score**, the
  normalised entropy of the modalities' shares of what moves a user's ranking;
* :func:`ridge_probe`: the **linear probe**, out-of-sample R-squared of a ridge regression from
  item features onto a target (planted latents, or interaction embeddings), fitted on some
  items and scored on the others;
* :func:`interaction_embedding`: the items' interaction-based embedding, a target that any
  dataset has (the leading singular vectors of the normalised training matrix);
* :func:`rank_correlation`: Spearman's rho, for the learned against the planted modality weights.

Pure functions of arrays and tensors: the models (their per-epoch ``diagnostics``) and the
``diagnose`` command both use them.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy import stats
from scipy.sparse.linalg import svds

#: Ridge penalties tried, relative to the mean squared singular value of the standardised
#: training features (so the grid means the same for features of any width).
RIDGE_GRID = tuple(10.0 ** k for k in range(-4, 6))


def normalised_entropy(shares, axis=-1):
    """``H(p) / log K`` of non-negative shares ``p`` along ``axis`` (normalised to sum 1 first).

    1 when the K entries are equal, 0 when one entry holds everything; ``0 log 0 = 0``. A row
    of zeros, or ``K < 2``, gives ``nan`` (no balance to speak of).

    Args:
        shares (array-like): ``[..., K]`` non-negative numbers.

    Returns:
        ndarray: the shape of ``shares`` without ``axis``.
    """
    p = np.asarray(shares, dtype=np.float64)
    k = p.shape[axis]
    total = p.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / total
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        h = terms.sum(axis=axis) / math.log(k) if k >= 2 else np.full(np.squeeze(total, axis).shape, np.nan)
    return np.where(np.squeeze(total, axis=axis) > 0, h, np.nan)


@torch.no_grad()
def view_score_spread(h_users, h_items, n_views, first_item=1):
    """How much each view moves each user's scores: the standard deviation over items of
    ``<h_u^v, h_i^v>``, the view's block of the score ``y_ui = sum_v <h_u^v, h_i^v>``.

    A ranking depends on a view's score only through its variation across items (a constant
    added to all of a user's scores changes nothing), hence the standard deviation rather
    than the mean or the mean magnitude. Computed exactly without any ``U x I`` score matrix:
    the variance over items of ``<u, h_i>`` is ``u^T S_v u`` with ``S_v`` the ``d x d``
    covariance (over items, divisor I) of the view's item block, in float64.

    Args:
        h_users (Tensor): ``(U, V*d)`` final user representations, views in blocks of d.
        h_items (Tensor): ``(I, V*d)`` final item representations.
        n_views (int): V.
        first_item (int): items before it (RecBole's padding item 0) are left out.

    Returns:
        ndarray: ``(U, V)`` float64, the population standard deviation over the items.
    """
    d = h_users.shape[1] // n_views
    items = h_items[first_item:].double()
    users = h_users.double()
    out = torch.empty(h_users.shape[0], n_views, dtype=torch.float64)
    for v in range(n_views):
        block = items[:, v * d:(v + 1) * d]
        centred = block - block.mean(dim=0)
        cov = centred.T @ centred / block.shape[0]
        u = users[:, v * d:(v + 1) * d]
        out[:, v] = ((u @ cov) * u).sum(dim=1).clamp_min(0).sqrt().cpu()
    return out.numpy()


def balance_summary(spread, views, modalities):
    """The modality balance score and the views' shares from :func:`view_score_spread`.

    Args:
        spread (ndarray): ``(U, V)``.
        views (list of str): the views' names (columns of ``spread``).
        modalities (list of str): the content modalities among them (the balance is over these).

    Returns:
        dict: ``balance`` (mean over users of the normalised entropy of the modalities' shares),
        ``share/<view>`` (each view's share of the spread over all views, mean over users).
    """
    cols = [views.index(m) for m in modalities]
    per_user = normalised_entropy(spread[:, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = spread / spread.sum(axis=1, keepdims=True)
    out = {"balance": float(np.nanmean(per_user)) if np.isfinite(per_user).any() else float("nan")}
    out.update({f"share/{v}": float(np.nanmean(shares[:, i])) for i, v in enumerate(views)})
    return out


def _standardise(train, test):
    mean, std = train.mean(axis=0), train.std(axis=0)
    keep = std > 1e-12 * max(1.0, float(np.abs(train).max(initial=0.0)))
    return (train[:, keep] - mean[keep]) / std[keep], (test[:, keep] - mean[keep]) / std[keep]


def _ridge_fit(x, y, grid=None):
    """Ridge weights on column-centred ``x`` and centred ``y`` (an unpenalised intercept), the
    penalty chosen by leave-one-out error over ``grid`` (default :data:`RIDGE_GRID`) times the
    mean squared singular value.

    The leave-one-out residual is ``(y_i - y_hat_i) / (1 - h_ii)`` with the hat matrix of the
    model with intercept, ``H = 11^T / n + U diag(s^2 / (s^2 + alpha)) U^T`` (the intercept's
    ``1/n`` matters: without it a point left out is still in the centring, and with more
    features than rows the left-out error looks like 0). Both parts are computed as sums of
    shrinkage factors ``alpha / (s^2 + alpha)``, without cancellation, so they stay exact where
    both go to 0 with alpha (more features than rows)."""
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    scale = float(np.mean(s ** 2)) if len(s) and np.mean(s ** 2) > 0 else 1.0
    # null directions (the centring's constant column among them) are not part of the fit
    kept = s > (s.max(initial=0.0) * max(x.shape) * np.finfo(np.float64).eps)
    u, s, vt = u[:, kept], s[kept], vt[kept]
    uty = u.T @ y
    outside = y - u @ uty  # the part of y outside the span of the rows' features
    u2 = u ** 2
    # 1 - h_ii outside the features' span and the intercept: 0 when the features span all rows
    rest = np.clip(1.0 - 1.0 / len(x) - u2.sum(axis=1), 0.0, None)
    best = None
    for rel in (RIDGE_GRID if grid is None else grid):
        alpha = rel * scale
        keep = alpha / (s ** 2 + alpha)
        resid = u @ (keep[:, None] * uty) + outside
        denom = u2 @ keep + rest
        err = float(((resid / np.maximum(denom, 1e-300)[:, None]) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, alpha)
    alpha = best[1]
    weights = vt.T @ ((s / (s ** 2 + alpha))[:, None] * uty)
    return weights, alpha


def ridge_probe(features, target, rows=None, n_splits=5, seed=0, fit_fraction=0.5):
    """Out-of-sample R-squared of a ridge regression from ``features`` onto ``target``.

    For each of ``n_splits`` random splits of the rows: standardise the features on the fit
    rows, centre the target on them, choose the penalty by leave-one-out error on the fit rows
    (:data:`RIDGE_GRID`), fit, predict the held-out rows, and score
    ``R^2 = 1 - sum (y - y_hat)^2 / sum (y - mean_fit(y))^2`` over all held-out entries (all
    target columns pooled). Linear only, so a lower bound on what a non-linear decoder could
    recover; finite samples bias it low (docs/diagnostics.md).

    Args:
        features (array-like): ``[n, p]``.
        target (array-like): ``[n]`` or ``[n, k]``.
        rows (array-like, optional): the rows to use (e.g. real items only), default all.
        n_splits (int): random splits averaged.
        seed (int): seeds the splits (numpy ``default_rng``).
        fit_fraction (float): share of the rows the ridge is fitted on.

    Returns:
        dict: ``r2`` (mean over splits), ``r2_std`` (sample std over splits, ``nan`` for one
        split), ``n_fit``, ``n_test``.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if rows is not None:
        x, y = x[rows], y[rows]
    n = len(x)
    n_fit = int(round(fit_fraction * n))
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"ridge_probe needs at least 2 fit and 2 held-out rows, got {n} rows")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_splits):
        order = rng.permutation(n)
        fit, test = order[:n_fit], order[n_fit:]
        x_fit, x_test = _standardise(x[fit], x[test])
        y_mean = y[fit].mean(axis=0)
        weights, _ = _ridge_fit(x_fit, y[fit] - y_mean)
        pred = x_test @ weights + y_mean
        total = float(((y[test] - y_mean) ** 2).sum())
        scores.append(1.0 - float(((y[test] - pred) ** 2).sum()) / total if total > 0 else float("nan"))
    return {"r2": float(np.mean(scores)), "r2_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan"),
            "n_fit": n_fit, "n_test": n - n_fit}


def interaction_embedding(users, items, n_users, n_items, rank=16):
    """Items' interaction-based embedding: ``V_k S_k`` of the rank-k truncated SVD of the
    symmetric-normalised training matrix ``D_U^-1/2 R D_I^-1/2`` (``R`` binary, duplicates once).

    A target that depends on the training interactions only, not on any model, so the probe
    onto it reads the same on every dataset and for every model.

    Args:
        users, items (array-like of int): ``[nnz]`` internal ids of the training interactions.
        n_users, n_items (int): id ranges.
        rank (int): k (capped below ``min(n_users, n_items)``).

    Returns:
        (ndarray, ndarray): ``(n_items, k)`` embedding and the ``[m]`` ids of the items with at
        least one training interaction (the rows a probe should use).
    """
    r = sp.csr_matrix((np.ones(len(users)), (np.asarray(users), np.asarray(items))), shape=(n_users, n_items))
    r.sum_duplicates()
    r.data[:] = 1.0
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    inv_u = np.where(du > 0, du, 1.0) ** -0.5
    inv_i = np.where(di > 0, di, 1.0) ** -0.5
    norm = sp.diags(inv_u) @ r @ sp.diags(inv_i)
    k = max(1, min(rank, min(n_users, n_items) - 2))
    _, s, vt = svds(norm, k=k, random_state=0)
    order = np.argsort(-s)
    return (vt[order].T * s[order]), np.flatnonzero(di > 0)


def rank_correlation(a, b):
    """Spearman's rho of two ``[n]`` arrays (finite pairs only); ``nan`` with fewer than 3."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[keep], b[keep])[0])
