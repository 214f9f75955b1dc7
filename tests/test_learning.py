"""Learning: on the planted synth-mm data, where content decides preference, GTC beats
ID-only baselines trained with the same budget (same epochs, learning rate and seed).

What every multi-modal model keeps (content helps on planted data, same seed same numbers)
is tests/test_mm_models.py's and tests/test_reproducibility.py's."""

import pytest

from recbole_gtc.quick_start.quick_start import run_recbole_gtc

BUDGET = {"epochs": 10, "learning_rate": 0.005, "stopping_step": 100, "use_gpu": False, "state": "WARNING"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    config = dict(BUDGET, checkpoint_dir=str(root / "saved"), graph_cache_dir=str(root / "cache"))
    return {m: run_recbole_gtc(m, "synth-mm", config_dict=config)["test_result"] for m in ("GTC", "BPR", "LightGCN")}


def test_gtc_beats_id_only_baselines_on_planted_data(results):
    gtc = results["GTC"]["recall@20"]
    best_baseline = max(results["BPR"]["recall@20"], results["LightGCN"]["recall@20"])
    assert gtc > best_baseline + 0.02, results


def test_baselines_learn_something(results):
    # Random ranking of 700 items gives recall@20 of about 20/700 = 0.03.
    for model in ("BPR", "LightGCN"):
        assert results[model]["recall@20"] > 0.06, results
