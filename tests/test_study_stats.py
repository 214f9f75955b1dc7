"""Statistics of a comparison study (recbole_gtc.study.stats) on known answers."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from recbole_gtc.study.stats import (mean_std, median_range, paired_ttest, relative_improvement, summarize,
                                     wilcoxon_pvalue)
from recbole_gtc.utils.errors import RecboleGTCError

USERS = ["u0", "u1", "u2"]
#: Reference "A" per-user recall per seed, shape [3 users] each.
A_RECALL = {1: [0.10, 0.50, 0.90], 2: [0.20, 0.40, 0.80], 3: [0.30, 0.60, 0.70]}
#: A - B per user and seed: nine distinct positive differences (so only a correct
#: alignment by token gives all-positive pooled differences).
DELTAS = {1: [0.01, 0.02, 0.03], 2: [0.04, 0.05, 0.06], 3: [0.07, 0.08, 0.09]}
A_NDCG = {1: 0.30, 2: 0.32, 3: 0.35}
B_NDCG = {1: 0.28, 2: 0.31, 3: 0.30, 4: 0.50}


def _record(label, seed, users, recall, ndcg, epochs=10, seconds=1.0):
    """A run record whose test recall is the mean of its per-user recall (ndcg has none)."""
    recall = np.asarray(recall, dtype=np.float64)
    return {
        "label": label, "model": label.split("[")[0], "dataset": "toy", "seed": seed,
        "run_id": f"{label}-{seed}", "valid_result": {},
        "test_result": {"recall@20": float(recall.mean()), "ndcg@20": ndcg},
        "epochs": epochs, "train_seconds_per_epoch": seconds,
        "users": list(users), "per_user": {"recall@20": recall},
    }


def make_records():
    """Labels "A" (seeds 1-3) and "B[x=1]" (seeds 1-4; seed 4 has no partner in A).

    B's seed-2 record lists its users in reverse order; its seed-3 record lacks u2 and has
    an extra user u7. Aligned by token, the pooled A - B differences are the 8 distinct
    positive DELTAS of users present in both.
    """
    records = [_record("A", s, USERS, A_RECALL[s], A_NDCG[s], epochs=10 + s, seconds=1.0 + 0.1 * s)
               for s in (1, 2, 3)]
    b = {s: np.subtract(A_RECALL[s], DELTAS[s]) for s in (1, 2, 3)}
    records += [
        _record("B[x=1]", 1, USERS, b[1], B_NDCG[1], epochs=20, seconds=2.0),
        _record("B[x=1]", 2, USERS[::-1], b[2][::-1], B_NDCG[2], epochs=None, seconds=2.5),
        _record("B[x=1]", 3, ["u1", "u0", "u7"], [b[3][1], b[3][0], 0.99], B_NDCG[3], epochs=30, seconds=2.2),
        _record("B[x=1]", 4, USERS, [0.9, 0.9, 0.9], B_NDCG[4], epochs=40, seconds=2.1),
    ]
    return records


def test_mean_std_sample_std():
    values = [0.40, 0.42, 0.47, 0.41]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values), abs=1e-15)
    assert std == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    mean, std = mean_std([0.4])
    assert mean == 0.4 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_std([]))


def test_paired_ttest_matches_formula():
    a = np.array([0.40, 0.42, 0.41, 0.45, 0.43])
    b = np.array([0.38, 0.41, 0.40, 0.41, 0.44])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    expected = 2 * sps.t.sf(abs(t), df=len(d) - 1)
    assert paired_ttest(a, b) == pytest.approx(expected, rel=1e-10)
    assert paired_ttest(b, a) == pytest.approx(expected, rel=1e-10)


def test_paired_ttest_conventions():
    assert paired_ttest([0.4, 0.5, 0.6], [0.4, 0.5, 0.6]) == 1.0          # no difference
    assert paired_ttest([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]) == 0.0          # constant: |t| infinite
    assert math.isnan(paired_ttest([0.4], [0.3]))                          # n = 1
    assert math.isnan(paired_ttest([], []))
    assert math.isnan(paired_ttest([0.4, float("nan")], [0.3, 0.2]))
    with pytest.raises(RecboleGTCError, match="differ in length"):
        paired_ttest([0.1, 0.2], [0.1])


def test_wilcoxon_exact_known_answer():
    # all 5 differences positive: only 1 of the 2^5 sign patterns is as extreme on each side
    assert wilcoxon_pvalue([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(2 / 32, abs=1e-15)
    assert wilcoxon_pvalue([0, 0, 0, 0, 0], [1, 2, 3, 4, 5]) == pytest.approx(2 / 32, abs=1e-15)
    # zero differences are dropped before the test
    assert wilcoxon_pvalue([1, 2, 3, 4, 5, 7, 8], [0, 0, 0, 0, 0, 7, 8]) == pytest.approx(2 / 32, abs=1e-15)
    # one non-zero difference: both signs equally likely
    assert wilcoxon_pvalue([1.0, 2.0], [0.0, 2.0]) == 1.0


def test_wilcoxon_ties_use_tie_corrected_normal_approximation():
    d = np.array([1, 1, 1, 2, 2, -1, 3, 3, 3, 3, -2, 4, 0, 0], dtype=np.float64)
    nz = d[d != 0]
    n = len(nz)
    ranks = sps.rankdata(np.abs(nz))
    t_stat = min(ranks[nz > 0].sum(), ranks[nz < 0].sum())
    _, counts = np.unique(np.abs(nz), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - (counts ** 3 - counts).sum() / 48
    z = (t_stat - n * (n + 1) / 4) / math.sqrt(var)
    expected = 2 * sps.norm.sf(abs(z))
    assert wilcoxon_pvalue(d, np.zeros_like(d)) == pytest.approx(expected, rel=1e-10)


def test_wilcoxon_conventions():
    assert wilcoxon_pvalue([0.3, 0.2, 0.1], [0.3, 0.2, 0.1]) == 1.0
    assert math.isnan(wilcoxon_pvalue([], []))
    assert math.isnan(wilcoxon_pvalue([0.3, float("nan")], [0.1, 0.2]))


def test_relative_improvement():
    assert relative_improvement(0.44, 0.40) == pytest.approx(0.1, abs=1e-12)
    assert relative_improvement(0.36, 0.40) == pytest.approx(-0.1, abs=1e-12)
    assert math.isnan(relative_improvement(0.3, 0.0))
    assert math.isnan(relative_improvement(float("nan"), 0.3))


def test_summarize_known_answers():
    records = make_records()
    summary = summarize(records, ["recall@20", "ndcg@20"])
    assert [row["label"] for row in summary] == ["A", "B[x=1]"]
    ref, other = summary
    assert ref["reference"] and not other["reference"]
    assert other["model"] == "B"
    assert ref["seeds"] == [1, 2, 3] and other["seeds"] == [1, 2, 3, 4]
    assert other["n_seeds"] == 4 and other["paired_seeds"] == [1, 2, 3]

    test = {(r["label"], r["seed"]): r["test_result"] for r in records}
    for row in summary:
        for m in ("recall@20", "ndcg@20"):
            values = [test[(row["label"], s)][m] for s in row["seeds"]]
            assert row["metrics"][m]["mean"] == pytest.approx(np.mean(values), abs=1e-15)
            assert row["metrics"][m]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert all(ref["metrics"][m][k] is None for m in ("recall@20", "ndcg@20")
               for k in ("improvement", "t_p", "wilcoxon_p", "n_users"))

    # improvement of the reference over B, each over all its seeds (B's includes seed 4)
    a_ndcg = np.mean(list(A_NDCG.values()))
    b_ndcg = np.mean(list(B_NDCG.values()))
    assert b_ndcg > a_ndcg
    assert other["metrics"]["ndcg@20"]["improvement"] == pytest.approx((a_ndcg - b_ndcg) / b_ndcg, abs=1e-12)
    assert other["metrics"]["ndcg@20"]["improvement"] < 0

    # paired t-test over seeds 1-3 only, by the formula
    d = np.array([A_NDCG[s] - B_NDCG[s] for s in (1, 2, 3)])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    assert other["metrics"]["ndcg@20"]["t_p"] == pytest.approx(2 * sps.t.sf(abs(t), df=2), rel=1e-9)
    with_seed_4 = paired_ttest([*A_NDCG.values(), 0.40], list(B_NDCG.values()))
    assert not math.isclose(with_seed_4, other["metrics"]["ndcg@20"]["t_p"])

    # per-user Wilcoxon: aligned by token, 8 pooled pairs, all A > B, distinct -> exact 2/2^8
    assert other["metrics"]["recall@20"]["n_users"] == 8
    assert other["metrics"]["recall@20"]["wilcoxon_p"] == pytest.approx(2 / 2 ** 8, abs=1e-15)
    # by position instead of by token, B's seed-2 record would pair u0 with u2 etc.
    a_pos = np.concatenate([A_RECALL[s] for s in (1, 2, 3)])
    b_pos = np.concatenate([records[3 + i]["per_user"]["recall@20"] for i in range(3)])
    assert wilcoxon_pvalue(a_pos, b_pos) > 0.05
    # no per-user ndcg: no Wilcoxon, no error
    assert math.isnan(other["metrics"]["ndcg@20"]["wilcoxon_p"])
    assert other["metrics"]["ndcg@20"]["n_users"] is None

    # epochs (None left out) and training time
    assert ref["epochs_mean"] == pytest.approx(12.0)
    assert other["epochs_mean"] == pytest.approx(np.mean([20, 30, 40]))
    secs = [2.0, 2.5, 2.2, 2.1]
    assert other["train_seconds_per_epoch_median"] == pytest.approx(np.median(secs), abs=1e-15)
    assert (other["train_seconds_per_epoch_min"], other["train_seconds_per_epoch_max"]) == (2.0, 2.5)
    assert "train_seconds_per_epoch_std" not in other  # a std spread reaches below zero on skewed timings


def test_median_range_stays_within_the_values():
    # one slow seed: mean - std would be negative, min..max never is
    seconds = [0.1, 0.1, 5.0]
    assert mean_std(seconds)[0] - mean_std(seconds)[1] < 0
    assert median_range(seconds) == (0.1, 0.1, 5.0)
    assert median_range([3.0, 1.0]) == (2.0, 1.0, 3.0)
    assert all(math.isnan(v) for v in median_range([]))


def test_training_time_leaves_out_runs_that_timed_nothing():
    """None (this version) and nan (what earlier versions stored) both mean "no epoch timed"."""
    records = [_record("A", s, USERS, A_RECALL[s], A_NDCG[s], seconds=value)
               for s, value in zip((1, 2, 3), (None, float("nan"), 4.0))]
    (row,) = summarize(records, ["ndcg@20"])
    assert [row[f"train_seconds_per_epoch_{k}"] for k in ("median", "min", "max")] == [4.0, 4.0, 4.0]


def test_summarize_other_reference_flips_comparison():
    summary = summarize(make_records(), ["ndcg@20"], reference="B[x=1]")
    assert [row["reference"] for row in summary] == [False, True]
    a_ndcg = np.mean(list(A_NDCG.values()))
    b_ndcg = np.mean(list(B_NDCG.values()))
    assert summary[0]["metrics"]["ndcg@20"]["improvement"] == pytest.approx((b_ndcg - a_ndcg) / a_ndcg, abs=1e-12)


def test_summarize_errors():
    records = make_records()
    with pytest.raises(RecboleGTCError, match=r"'A': two runs with seed 2"):
        summarize(records + [dict(records[1])], ["recall@20"])
    with pytest.raises(RecboleGTCError, match="reference 'C' is none of the labels"):
        summarize(records, ["recall@20"], reference="C")
    with pytest.raises(RecboleGTCError, match="no metric 'mrr@10'"):
        summarize(records, ["mrr@10"])
    with pytest.raises(RecboleGTCError, match="no run records"):
        summarize([], ["recall@20"])
    bad = make_records()
    bad[0]["per_user"]["recall@20"] = np.zeros(2)
    with pytest.raises(RecboleGTCError, match="2 values for 3 users"):
        summarize(bad, ["recall@20"])
