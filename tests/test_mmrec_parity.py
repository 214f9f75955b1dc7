"""benchmarks/mmrec_parity.py's bookkeeping (the runs themselves need MMRec's code and hours)."""

import pytest
from scipy import stats

from benchmarks.mmrec_parity import DATASETS, MMREC_SETTINGS, first_best_epoch, table, user_graph_dict


def test_selection_is_mmrecs_first_best_epoch():
    # MMRec keeps the first of tied best validation scores (RecBole's >= would take epoch 3).
    assert first_best_epoch([0.10, 0.12, 0.11, 0.12, 0.09]) == 1
    assert first_best_epoch([0.3]) == 0


def test_table_pairs_seeds_and_tests_the_difference():
    def rec(impl, seed, value, extra=None, best=0, wall=None):
        return dict(impl=impl, model="LGMRec", dataset="sparse", seed=seed, test_recall20=value,
                    best_epoch=best, epochs=best + 22, extra=extra or {}, wall_s=wall)

    mm = [0.090, 0.080, 0.085, 0.095]
    here = [0.092, 0.081, 0.083, 0.097, 0.5]  # seed 1003 has no MMRec run: left out
    records = [rec("mmrec", 999 + i, v, wall=None if i == 0 else 10.0 * i) for i, v in enumerate(mm)]
    records += [rec("ours", 999 + i, v, best=2, wall=5.0) for i, v in enumerate(here)]
    records += [rec("ours", 999, 0.07, {"eval_noise": "fresh"})]  # one seed only: no summary row
    out = table(records, ["LGMRec"], ["sparse"], [999, 1000, 1001, 1002, 1003])
    summary, per_seed = out.split("\n\n")
    rows = [line for line in summary.splitlines() if line.startswith("| LGMRec")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2:4] == ["default", "4"]
    mean_mm, mean_here = sum(mm) / 4, sum(here[:4]) / 4
    assert cells[6] == f"{mean_here / mean_mm:.2f}"
    assert cells[7] == f"{stats.ttest_ind(mm, here[:4], equal_var=False).pvalue:.2f}"
    assert cells[8] == "0.0 / 2.0"
    assert cells[9] == "20 / 5"  # mean of the paired runs that have a time (seeds 1000-1002: 10, 20, 30)
    mm_row, here_row, fresh_row = [line for line in per_seed.splitlines() if line.startswith("| LGMRec")]
    assert here_row.endswith("| 0.0970 (2) | 0.5000 (2) |")  # every seed of the run, paired or not
    assert "MMRec" in mm_row and mm_row.endswith("| 0.0950 (0) |  |")
    assert "eval_noise" in fresh_row and "| 0.0700 (0) |  |" in fresh_row  # one seed: no summary, still listed


def test_table_keeps_runs_with_shared_settings_apart():
    # runs given the same settings on both sides (--shared, e.g. a longer patience) form their own
    # table; they never pair with, or enter the means of, the runs at MMRec's settings
    def rec(impl, seed, value, shared=None):
        return dict(impl=impl, model="LGMRec", dataset="dense", seed=seed, test_recall20=value,
                    best_epoch=0, epochs=22, extra={}, shared=shared or {})

    long = {"stopping_step": 100}
    records = [rec("mmrec", 999, 0.26), rec("mmrec", 1000, 0.35), rec("ours", 999, 0.40), rec("ours", 1000, 0.38),
               rec("mmrec", 999, 0.41, long), rec("mmrec", 1000, 0.39, long), rec("ours", 999, 0.40, long),
               rec("ours", 1000, 0.37, long)]
    seeds = [999, 1000]

    def summary(shared):
        rows = [line for line in table(records, ["LGMRec"], ["dense"], seeds, shared).split("\n\n")[0].splitlines()
                if line.startswith("| LGMRec")]
        assert len(rows) == 1
        return [c.strip() for c in rows[0].strip("|").split("|")]

    def cell(values):
        return f"{sum(values) / len(values):.4f} ± {stats.tstd(values):.4f}"

    assert summary(None)[4:6] == [cell([0.26, 0.35]), cell([0.40, 0.38])]
    assert summary(long)[4:6] == [cell([0.41, 0.39]), cell([0.40, 0.37])]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_planted_sets_are_valid_generator_configs(name):
    from recbole_gtc.prepare.synthetic import make_config

    cfg = make_config("small", **DATASETS[name])
    assert cfg.users * (cfg.min_inter + cfg.mean_extra) / cfg.items > 1


def test_user_graph_dict_counts_shared_training_items():
    # training rows (user, item); (0, 0) twice counts once, as MMRec's script keeps item sets
    rows = [(0, 0), (0, 1), (0, 2), (0, 0), (1, 0), (1, 1), (2, 2), (2, 3), (3, 3), (4, 4)]
    users, items = zip(*rows)
    graph = user_graph_dict(users, items, n_users=6)
    # shared items by hand: 0-1 {0, 1}: 2; 0-2 {2}: 1; 2-3 {3}: 1; user 4 shares nothing; user 5 has no rows
    assert sorted(graph) == list(range(6))
    assert graph[0] == [[1, 2], [2.0, 1.0]]
    assert graph[1] == [[0], [2.0]]
    assert graph[3] == [[2], [1.0]]
    assert graph[4] == [[], []] and graph[5] == [[], []]
    assert sorted(graph[2][0]) == [0, 3] and graph[2][1] == [1.0, 1.0]  # a tie: both kept, count 1 each
    # at most `top` neighbours per user, the largest counts first
    assert user_graph_dict(users, items, n_users=6, top=1)[0] == [[1], [2.0]]


def test_mmrec_side_trains_the_package_defaults():
    import os

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for model, settings in MMREC_SETTINGS.items():
        with open(os.path.join(root, "properties", "model", f"{model}.yaml")) as f:
            defaults = yaml.safe_load(f)
        for key, value in settings.items():
            assert float(defaults[key]) == value, (model, key)
