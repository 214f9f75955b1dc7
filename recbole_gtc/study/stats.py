"""Statistics of a comparison study: mean +- sample std over seeds, the paired t-test over
seeds, the per-user Wilcoxon signed-rank test over the pooled seeds, the relative
improvement of the reference model, and the training time's median and range over seeds.

Every p-value is two-sided. Degenerate inputs have fixed, documented answers instead of
scipy's warnings and ``nan``s (see :func:`paired_ttest` and :func:`wilcoxon_pvalue`), so a
results table never depends on which warnings a scipy version emits.

:func:`summarize` turns run records (see :mod:`recbole_gtc.study`) into one row per model
spec; :mod:`recbole_gtc.study.report` prints those rows.
"""

import math
import warnings

import numpy as np
from scipy import stats

from recbole_gtc.utils.errors import RecboleGTCError

#: Largest number of non-zero differences for which the Wilcoxon test uses the exact null
#: distribution (scipy's own threshold); above it, the normal approximation.
WILCOXON_EXACT_MAX_N = 50

#: The training-time statistics of a summary row, ``train_seconds_per_epoch_<stat>``
#: (:func:`median_range`).
TIME_STATS = ("median", "min", "max")


def _as_1d(values, what):
    """``values`` as a float64 array of shape ``[n]``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise RecboleGTCError(f"{what}: expected a 1-D sequence of numbers, got shape {array.shape}")
    return array


def _paired(a, b, what):
    """``a`` and ``b`` as float arrays of one shape ``[n]``, or a one-line error."""
    a, b = _as_1d(a, what), _as_1d(b, what)
    if a.shape != b.shape:
        raise RecboleGTCError(f"{what}: paired samples differ in length ({len(a)} vs {len(b)})")
    return a, b


def mean_std(values):
    """Mean and sample standard deviation (``ddof=1``) of ``values``.

    Args:
        values (sequence of float): shape ``[n]``, e.g. one metric over seeds.

    Returns:
        tuple(float, float): ``(mean, std)``; ``std`` is ``nan`` when ``n < 2`` and both
        are ``nan`` when ``n == 0``.
    """
    values = _as_1d(values, "mean_std")
    if len(values) == 0:
        return math.nan, math.nan
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan
    return mean, std


def median_range(values):
    """Median, minimum and maximum of ``values``: a centre and a spread that stay within the
    values (a duration's spread never reaches below zero, as mean - std can).

    Args:
        values (sequence of float): shape ``[n]``, e.g. one run's seconds per epoch per seed.

    Returns:
        tuple(float, float, float): ``(median, min, max)``; all ``nan`` when ``n == 0``.
    """
    values = _as_1d(values, "median_range")
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    return float(np.median(values)), float(np.min(values)), float(np.max(values))


def paired_ttest(a, b):
    """Two-sided p-value of the paired t-test of ``a`` against ``b`` (``scipy.stats.ttest_rel``).

    Args:
        a, b (sequence of float): shape ``[n]`` each; ``a[i]`` and ``b[i]`` are the same
            seed's values of two models.

    Returns:
        float: the p-value, with these conventions where the t statistic is undefined:

        * ``nan`` when ``n < 2`` (no variance estimate) or any value is not finite;
        * ``1.0`` when every difference ``a[i] - b[i]`` is 0 (no evidence of a difference);
        * ``0.0`` when the differences are all equal and non-zero (zero variance, so
          ``|t|`` is infinite).
    """
    a, b = _paired(a, b, "paired_ttest")
    if len(a) < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    diff = a - b
    if np.all(diff == 0):
        return 1.0
    if np.all(diff == diff[0]):
        return 0.0
    with warnings.catch_warnings():
        # nearly constant differences warn about precision loss; the p-value is still ~0
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def wilcoxon_pvalue(a, b):
    """Two-sided p-value of the Wilcoxon signed-rank test of ``a`` against ``b``.

    Pairs whose difference is exactly 0 are dropped first (``zero_method="wilcox"``). On the
    ``m`` remaining differences, the exact null distribution is used when ``m <= 50`` and no
    two ``|a[i] - b[i]|`` are tied (the exact distribution assumes distinct ranks); otherwise
    the normal approximation with the tie correction of the variance (no continuity
    correction), as ``scipy.stats.wilcoxon(method="approx")`` computes it. Per-user metrics
    have many ties, so pooled per-user tests usually take the approximation.

    Args:
        a, b (sequence of float): shape ``[n]`` each, paired values (e.g. one user's metric
            under two models).

    Returns:
        float: the p-value, with these conventions:

        * ``nan`` when ``n == 0`` or any value is not finite;
        * ``1.0`` when every difference is 0 (``m == 0``: no evidence of a difference);
        * otherwise scipy's value, also for small ``m`` (``m == 1`` gives 1.0 exactly).
    """
    a, b = _paired(a, b, "wilcoxon_pvalue")
    if len(a) == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    diff = a - b
    diff = diff[diff != 0]
    if len(diff) == 0:
        return 1.0
    magnitudes = np.abs(diff)
    tied = len(np.unique(magnitudes)) < len(magnitudes)
    method = "exact" if len(diff) <= WILCOXON_EXACT_MAX_N and not tied else "approx"
    with warnings.catch_warnings():
        # "sample size too small for normal approximation": the convention above is documented
        warnings.simplefilter("ignore", UserWarning)
        result = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided", method=method)
    return float(result.pvalue)


def relative_improvement(ref_mean, other_mean):
    """``(ref_mean - other_mean) / other_mean``: how much better the reference is, as a fraction.

    Returns:
        float: e.g. ``0.05`` for 5% better; ``nan`` when ``other_mean`` is 0 or either value
        is ``nan``.
    """
    ref_mean, other_mean = float(ref_mean), float(other_mean)
    if other_mean == 0 or math.isnan(ref_mean) or math.isnan(other_mean):
        return math.nan
    return (ref_mean - other_mean) / other_mean


def _record_name(record):
    return f"run {record.get('run_id', '?')} ({record.get('label', '?')}, seed {record.get('seed', '?')})"


def _test_value(record, metric):
    result = record.get("test_result") or {}
    if metric not in result:
        raise RecboleGTCError(f"{_record_name(record)}: test_result has no metric {metric!r}")
    return float(result[metric])


def _optional_numbers(records, key):
    """The records' ``key`` values that are set: ``None``, missing ones and ``nan`` (what earlier
    versions stored for a trainer that times no epoch) left out."""
    values = [float(r[key]) for r in records if r.get(key) is not None]
    return [v for v in values if not math.isnan(v)]


def _per_user(record, metric):
    """``(users, values)`` of ``record`` for ``metric``, or None when it has no per-user values.

    ``values`` is a float array of shape ``[len(users)]``.
    """
    per_user = record.get("per_user") or {}
    users = record.get("users")
    if metric not in per_user or per_user[metric] is None or users is None:
        return None
    values = np.asarray(per_user[metric], dtype=np.float64).reshape(-1)
    if len(values) != len(users):
        raise RecboleGTCError(
            f"{_record_name(record)}: per_user[{metric!r}] has {len(values)} values for {len(users)} users"
        )
    return [str(u) for u in users], values


def pooled_user_pairs(ref_records, other_records, metric):
    """Per-user values of two models, aligned by user token and pooled over common seeds.

    Args:
        ref_records, other_records (dict seed -> record): the two models' runs.
        metric (str): a metric name of ``per_user``.

    Returns:
        tuple(numpy.ndarray, numpy.ndarray) or None: ``(ref, other)``, float arrays of shape
        ``[n]`` where ``n`` sums, over the seeds both models have (ascending), the users both
        records list; within a seed the users follow the reference record's order. None when
        a record of a common seed has no per-user values for ``metric``.
    """
    ref_parts, other_parts = [], []
    for seed in sorted(set(ref_records) & set(other_records)):
        ref, other = _per_user(ref_records[seed], metric), _per_user(other_records[seed], metric)
        if ref is None or other is None:
            return None
        other_index = {user: i for i, user in enumerate(other[0])}
        rows = [(i, other_index[u]) for i, u in enumerate(ref[0]) if u in other_index]
        ref_idx = np.array([r for r, _ in rows], dtype=np.int64)
        other_idx = np.array([o for _, o in rows], dtype=np.int64)
        ref_parts.append(ref[1][ref_idx])
        other_parts.append(other[1][other_idx])
    if not ref_parts:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(ref_parts), np.concatenate(other_parts)


def summarize(records, metrics, reference=None):
    """One summary row per model spec (label), in the order labels first appear.

    Args:
        records (list of dict): run records (see :mod:`recbole_gtc.study`).
        metrics (list of str): the metrics to summarize, e.g. ``["recall@20", "ndcg@20"]``.
        reference (str, optional): the label every other row is compared against; the first
            label by default.

    Returns:
        list of dict: per label,

        * ``label``, ``model`` (of its first record), ``reference`` (bool: this row is the
          reference), ``n_seeds``, ``seeds`` (sorted list of int);
        * ``paired_seeds``: the seeds this label shares with the reference (sorted; the
          reference row's own seeds for the reference);
        * ``metrics``: dict metric -> dict with ``mean`` and ``std`` (sample std over the
          label's seeds), and for non-reference rows (None for the reference row):
          ``improvement`` (:func:`relative_improvement` of the reference's mean over this
          row's mean, each over all of its seeds), ``t_p`` (:func:`paired_ttest` of the
          reference against this row over ``paired_seeds``), ``wilcoxon_p``
          (:func:`wilcoxon_pvalue` of the reference against this row over
          :func:`pooled_user_pairs`; ``nan`` when a record lacks per-user values) and
          ``n_users`` (the number of pooled user pairs; None without per-user values);
        * ``epochs_mean``, and ``train_seconds_per_epoch_median``, ``_min`` and ``_max``
          (:func:`median_range` of the runs' ``train_seconds_per_epoch``), over the records
          where they are set (``nan`` where none is).

    Raises:
        RecboleGTCError: no records, two records with the same label and seed, an unknown
            ``reference``, or a record whose ``test_result`` lacks one of ``metrics``.
    """
    if not records:
        raise RecboleGTCError("summarize: no run records")
    by_label = {}
    for record in records:
        label, seed = record["label"], int(record["seed"])
        runs = by_label.setdefault(label, {})
        if seed in runs:
            raise RecboleGTCError(f"label {label!r}: two runs with seed {seed}")
        runs[seed] = record
    if reference is None:
        reference = next(iter(by_label))
    if reference not in by_label:
        raise RecboleGTCError(f"reference {reference!r} is none of the labels: {', '.join(by_label)}")

    ref_runs = by_label[reference]
    ref_means = {m: mean_std([_test_value(r, m) for r in ref_runs.values()])[0] for m in metrics}
    summary = []
    for label, runs in by_label.items():
        seeds = sorted(runs)
        is_ref = label == reference
        paired = sorted(set(seeds) & set(ref_runs))
        row = {
            "label": label,
            "model": next(iter(runs.values())).get("model"),
            "reference": is_ref,
            "n_seeds": len(seeds),
            "seeds": seeds,
            "paired_seeds": paired,
            "metrics": {},
        }
        for metric in metrics:
            mean, std = mean_std([_test_value(runs[s], metric) for s in seeds])
            entry = {"mean": mean, "std": std, "improvement": None, "t_p": None,
                     "wilcoxon_p": None, "n_users": None}
            if not is_ref:
                entry["improvement"] = relative_improvement(ref_means[metric], mean)
                entry["t_p"] = paired_ttest(
                    [_test_value(ref_runs[s], metric) for s in paired],
                    [_test_value(runs[s], metric) for s in paired],
                )
                pairs = pooled_user_pairs(ref_runs, runs, metric)
                if pairs is None:
                    entry["wilcoxon_p"] = math.nan
                else:
                    entry["wilcoxon_p"] = wilcoxon_pvalue(*pairs)
                    entry["n_users"] = len(pairs[0])
            row["metrics"][metric] = entry
        ordered = [runs[s] for s in seeds]
        epochs = _optional_numbers(ordered, "epochs")
        row["epochs_mean"] = mean_std(epochs)[0]
        seconds = median_range(_optional_numbers(ordered, "train_seconds_per_epoch"))
        for key, value in zip(TIME_STATS, seconds):
            row[f"train_seconds_per_epoch_{key}"] = value
        summary.append(row)
    return summary
