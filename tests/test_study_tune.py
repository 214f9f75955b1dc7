"""Hyper-parameter search (recbole_gtc.study.tune): validation-only model selection, the
grid walk, random search's distinct draws, TPE through hyperopt.fmin, the package's grid
files, the cache and the refused grids."""

import csv
import glob
import itertools
import os

import hyperopt
import numpy as np
import pytest
import yaml
from recbole.trainer.hyper_tuning import HyperTuning

import recbole_gtc.quick_start.quick_start as quick_start
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.study import tune as tune_mod
from recbole_gtc.study.tune import best_trial, grid_settings, load_space, random_settings, read_header, safe_label, tune
from recbole_gtc.trainer.trainer import MMTrainer
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.utils import PROPERTIES_DIR

HYPER_MODELS = {"GTC", "DRAGON", "FREEDOM", "LGMRec", "VBPR", "BPR", "LightGCN", "NGCF", "SGL", "MultiVAE", "EASE"}


def _common(tiny, tmp_path):
    return {"data_path": tiny, "epochs": 2, "state": "WARNING", "checkpoint_dir": str(tmp_path / "saved"),
            "graph_cache_dir": None}


def _grid(tmp_path, text, name="grid.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class FakeRuns:
    """Stands in for run_recbole_gtc: the validation score is ``scores[learning_rate]``;
    records every call (the configuration's grid values, saved, test)."""

    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def __call__(self, model, dataset, config=None, saved=True, test=True, **kwargs):
        self.calls.append({"learning_rate": config["learning_rate"], "reg_weight": config["reg_weight"],
                           "saved": saved, "test": test})
        score = self.scores[config["learning_rate"]]
        return {"best_valid_score": score, "best_valid_result": {"recall@20": score, "ndcg@20": score / 2},
                "test_result": {}, "epochs": 2, "run_id": f"fake-{len(self.calls)}"}


# --------------------------------------------------------------------------- grid files

def _model_keys(model):
    """Keys the model's own YAML (ours, else RecBole's) and RecBole's training arguments define."""
    import recbole
    from recbole.utils import argument_list

    ours = os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml")
    theirs = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{model}.yaml")
    with open(ours if os.path.isfile(ours) else theirs) as f:
        keys = set(yaml.safe_load(f))
    return keys | set(argument_list.training_arguments)


def test_every_hyper_file_parses_with_recbole_and_names_keys_its_model_accepts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # load_config creates checkpoint folders in the working directory
    files = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "hyper", "*.hyper")))
    assert {os.path.basename(f)[:-len(".hyper")] for f in files} == HYPER_MODELS
    for path in files:
        model = os.path.basename(path)[:-len(".hyper")]
        space, grid = load_space(path)
        # RecBole's own parser on the same lines without the comments gives the same space keys
        stripped = tmp_path / f"{model}.stripped"
        stripped.write_text("".join(line for line in open(path) if line.strip() and not line.startswith("#")))
        assert list(HyperTuning._build_space_from_file(str(stripped))) == list(grid), model
        assert all(options and len(options) >= 2 for options in grid.values()), model
        assert set(grid) <= _model_keys(model), (model, set(grid) - _model_keys(model))
        # every first value loads as a full configuration; every value passes the value rules
        overrides = {"checkpoint_dir": str(tmp_path / "saved"), "graph_cache_dir": None}

        def load(params):
            return load_config(model, "synth-mm", config_dict={**overrides, **params}, cmd_args=[])

        config = tune_mod._check_grid_values(path, grid, model, load)
        for key, options in grid.items():
            assert config[key] == options[0], (model, key)


def test_gtc_grid_is_the_papers_and_ours():
    _, grid = load_space(os.path.join(PROPERTIES_DIR, "hyper", "GTC.hyper"))
    assert grid == {"learning_rate": [0.0001, 0.0005, 0.001], "tc_weight": [0.4, 0.5],
                    "diff_weight": [0.5, 0.7, 1.0], "noise_steps": [300, 600, 1000]}


def test_load_space_names_the_bad_line(tmp_path):
    path = _grid(tmp_path, "# a comment line\nlearning_rate choice [0.1, 0.2]\nreg_weight between 1 2\n")
    with pytest.raises(RecboleGTCError, match=r"grid.hyper:3: 'reg_weight between 1 2' is not"):
        load_space(path)
    with pytest.raises(RecboleGTCError, match="no hyper-parameter lines"):
        load_space(_grid(tmp_path, "# only comments\n", "empty.hyper"))


def test_safe_label():
    assert safe_label("GTC[use_tc=False]") == "GTC_use_tc=False_"
    assert safe_label("GTC[use_tc=False,tc_mode=pairwise]") == "GTC_use_tc=False_tc_mode=pairwise_"
    assert safe_label("../up") == "_._up"
    long = safe_label("G" * 500)
    assert len(long) == tune_mod._MAX_LABEL and long != safe_label("G" * 499)


# --------------------------------------------------------------------------- real search

def test_best_params_are_the_validation_argmax_and_test_is_never_evaluated(tiny, tmp_path, monkeypatch, capsys):
    common = _common(tiny, tmp_path)
    lrs = [0.01, 0.0001, 0.001]
    params_file = _grid(tmp_path, f"# three trials\nlearning_rate choice {lrs}  # trailing comment\n")

    # spy: every loader the trainer evaluates, and every test loader data_preparation builds
    test_loaders, evaluated = [], []
    real_prep, real_eval = quick_start.data_preparation, MMTrainer.evaluate

    def prep(*args, **kwargs):
        loaders = real_prep(*args, **kwargs)
        test_loaders.append(loaders[2])
        return loaders

    def evaluate(self, eval_data, *args, **kwargs):
        evaluated.append(eval_data)
        return real_eval(self, eval_data, *args, **kwargs)

    monkeypatch.setattr(quick_start, "data_preparation", prep)
    monkeypatch.setattr(MMTrainer, "evaluate", evaluate)
    result = tune("GTC[use_tc=False]", "GTC", "tiny", config_dict={**common, "use_tc": False},
                  params_file=params_file, out_dir=str(tmp_path / "out" / "<dataset>"))
    captured = capsys.readouterr()
    assert len(test_loaders) == 3 and len(evaluated) == 3 * 2  # 2 epochs x 3 trials, validation only
    assert not any(loader is test for loader in evaluated for test in test_loaders)
    monkeypatch.undo()

    # independently: each configuration run directly, same seed
    direct = []
    for lr in lrs:
        run = run_recbole_gtc("GTC", "tiny", config_dict={**common, "use_tc": False, "learning_rate": lr},
                              cmd_args=[], saved=False)
        direct.append(run["best_valid_result"])
    scores = [r["recall@20"] for r in direct]
    assert len(set(scores)) > 1  # the grid matters, so the argmax means something
    best = scores.index(max(scores))  # ties: the earlier trial
    assert result["best_params"] == {"learning_rate": lrs[best]}
    assert result["best_valid_score"] == scores[best] and result["cached"] is False
    assert result["label"] == "GTC[use_tc=False]"
    assert result["yaml"] == str(tmp_path / "out" / "tiny" / "GTC_use_tc=False_.yaml")
    assert result["trials_csv"] == str(tmp_path / "out" / "tiny" / "GTC_use_tc=False_.trials.csv")

    with open(result["yaml"]) as f:
        assert yaml.safe_load(f) == {"learning_rate": lrs[best]}
    header = read_header(result["yaml"])
    assert header["label"] == "GTC[use_tc=False]" and header["valid_metric"] == "recall@20"
    assert float(header["best_valid_score"]) == scores[best] and header["date"]
    with open(result["trials_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["learning_rate"]) for r in rows] == lrs
    assert not [c for c in rows[0] if "test" in c]
    for row, valid in zip(rows, direct):
        assert {m: float(row[f"valid_{m}"]) for m in valid} == valid
    for i, lr in enumerate(lrs, 1):
        assert f"tune GTC[use_tc=False]: trial {i}/3 {{'learning_rate': {lr}}} valid recall@20={scores[i - 1]:.4f}" \
            in captured.err
    assert "running parameters" not in captured.out and "tune " not in captured.out


# --------------------------------------------------------------------------- bookkeeping (fake runs)

def test_cache_returns_without_training_and_a_changed_grid_reruns(tiny, tmp_path, monkeypatch, capsys, replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5, 0.3: 0.4})
    replace_runner("run_recbole_gtc", fake)
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2]\n")
    kwargs = dict(config_dict=_common(tiny, tmp_path), params_file=params_file, out_dir=str(tmp_path / "out"))
    first = tune("BPR", "BPR", "tiny", **kwargs)
    assert len(fake.calls) == 2 and first["best_params"] == {"learning_rate": 0.2} and not first["cached"]
    assert all(call["test"] is False and call["saved"] is False for call in fake.calls)
    capsys.readouterr()

    again = tune("BPR", "BPR", "tiny", **kwargs)
    assert len(fake.calls) == 2  # nothing trained
    assert again == dict(first, cached=True)
    assert "tune BPR: cached" in capsys.readouterr().err

    # another command-line override is another search
    tune("BPR", "BPR", "tiny", cmd_args=["--train_batch_size=512"], **kwargs)
    assert len(fake.calls) == 4

    with open(params_file, "w") as f:
        f.write("learning_rate choice [0.1, 0.2, 0.3]\n")
    changed = tune("BPR", "BPR", "tiny", **kwargs)
    assert len(fake.calls) == 7 and not changed["cached"]
    assert changed["best_params"] == {"learning_rate": 0.2} and changed["best_valid_score"] == 0.5
    with open(changed["trials_csv"]) as f:
        assert [row["valid_recall@20"] for row in csv.DictReader(f)] == ["0.3", "0.5", "0.4"]


def test_a_changed_dataset_is_searched_again(tiny, tmp_path, monkeypatch, replace_runner):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(os.path.join(tiny, "tiny"), data / "tiny")
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5})
    replace_runner("run_recbole_gtc", fake)
    kwargs = dict(config_dict=dict(_common(tiny, tmp_path), data_path=str(data)),
                  params_file=_grid(tmp_path, "learning_rate choice [0.1, 0.2]\n"), out_dir=str(tmp_path / "out"))
    assert not tune("BPR", "BPR", "tiny", **kwargs)["cached"]
    assert tune("BPR", "BPR", "tiny", **kwargs)["cached"]
    train = data / "tiny" / "tiny.train.inter"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines[:-1]))  # one training interaction fewer
    assert not tune("BPR", "BPR", "tiny", **kwargs)["cached"] and len(fake.calls) == 4


def test_exhaustive_walks_the_grid_in_file_order_once(tiny, tmp_path, monkeypatch, replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5})
    replace_runner("run_recbole_gtc", fake)
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2]\nreg_weight choice [0.3, 0.1, 0.2]\n")
    kwargs = dict(config_dict=_common(tiny, tmp_path), params_file=params_file, out_dir=str(tmp_path / "out"))
    result = tune("LightGCN", "LightGCN", "tiny", early_stop=None, **kwargs)
    assert [(c["learning_rate"], c["reg_weight"]) for c in fake.calls] == [
        (0.1, 0.3), (0.1, 0.1), (0.1, 0.2), (0.2, 0.3), (0.2, 0.1), (0.2, 0.2)]
    # ties on the score: the first trial with it wins
    assert result["best_params"] == {"learning_rate": 0.2, "reg_weight": 0.3}

    del fake.calls[:]
    tune("LightGCN", "LightGCN", "tiny", max_evals=4, **kwargs)
    assert len(fake.calls) == 4
    del fake.calls[:]
    tune("LightGCN", "LightGCN", "tiny", early_stop=2, algo="exhaustive", max_evals=5, **kwargs)
    assert len(fake.calls) == 3  # trial 1 sets the best, 2 and 3 do not improve on it


def _trials(result, *names):
    with open(result["trials_csv"]) as f:
        return [tuple(float(row[name]) for name in names) for row in csv.DictReader(f)]


def test_the_grid_walk_is_the_product_of_the_lines_in_file_order():
    grid = {"learning_rate": [0.1, 0.2], "n_layers": [3, 1, 2], "tag": ["b", "a"]}
    walk = list(grid_settings(grid))
    # itertools.product over the lines in file order: the last line varies fastest
    assert walk == [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    assert [tuple(setting.values()) for setting in walk[:4]] == [
        (0.1, 3, "b"), (0.1, 3, "a"), (0.1, 1, "b"), (0.1, 1, "a")]
    assert len(walk) == 12 and walk[-1] == {"learning_rate": 0.2, "n_layers": 2, "tag": "a"}


def test_random_settings_are_distinct_grid_points_and_seeded():
    grid = {"learning_rate": [0.1, 0.2, 0.3], "reg_weight": [0.01, 0.02, 0.03], "n_layers": [1, 2]}
    product = list(grid_settings(grid))
    for seed in range(20):
        drawn = random_settings(None, grid, 8, seed)
        assert len(drawn) == 8 and all(setting in product for setting in drawn)
        assert len({tuple(setting.values()) for setting in drawn}) == 8  # no setting twice
        assert drawn == random_settings(None, grid, 8, seed)  # same seed, same settings, same order
    assert random_settings(None, grid, 8, 0) != random_settings(None, grid, 8, 1)
    # more trials than settings: every setting once, in a seeded random order
    everything = random_settings(None, grid, 100, 3)
    assert sorted(map(str, everything)) == sorted(map(str, product)) and everything != product


def test_random_settings_with_a_continuous_line(tmp_path, monkeypatch):
    space, grid = load_space(_grid(tmp_path, "learning_rate loguniform -9,-4\nn_layers choice [1, 2]\n"))
    drawn = random_settings(space, grid, 6, 5)
    assert len(drawn) == 6 and len({tuple(setting.values()) for setting in drawn}) == 6
    assert all(np.exp(-9) <= s["learning_rate"] <= np.exp(-4) and s["n_layers"] in (1, 2) for s in drawn)
    assert drawn == random_settings(space, grid, 6, 5) and drawn != random_settings(space, grid, 6, 6)
    # quniform and choice lines only: a finite space, drawn until repeats are all that come
    monkeypatch.setattr(tune_mod, "_MAX_REDRAWS", 50)
    space, grid = load_space(_grid(tmp_path, "n_layers quniform 1,2,1\ndropout choice [0.1, 0.2]\n", "q.hyper"))
    drawn = random_settings(space, grid, 10, 0)
    assert sorted((s["n_layers"], s["dropout"]) for s in drawn) == [(1, 0.1), (1, 0.2), (2, 0.1), (2, 0.2)]


def test_random_search_trains_distinct_settings_reproducibly(tiny, tmp_path, monkeypatch, capsys,
                                                            replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5, 0.3: 0.1})
    replace_runner("run_recbole_gtc", fake)
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2, 0.3]\nreg_weight choice [0.01, 0.02, 0.03]\n")
    kwargs = dict(params_file=params_file, algo="random", max_evals=8, early_stop=None)
    common = _common(tiny, tmp_path)
    first = tune("LightGCN", "LightGCN", "tiny", config_dict=common, out_dir=str(tmp_path / "a"), **kwargs)
    trained = [(c["learning_rate"], c["reg_weight"]) for c in fake.calls]
    # 8 trials are 8 distinct settings of the 9, each trained once, in the order of the trials file
    assert len(set(trained)) == 8 and _trials(first, "learning_rate", "reg_weight") == trained
    second = tune("LightGCN", "LightGCN", "tiny", config_dict=common, out_dir=str(tmp_path / "b"), **kwargs)
    assert _trials(second, "learning_rate", "reg_weight") == trained  # same seed, same settings
    expected = max(trained, key=lambda setting: fake.scores[setting[0]])  # ties: the earlier trial
    assert first["best_params"] == second["best_params"] == dict(zip(("learning_rate", "reg_weight"), expected))
    other_seed = tune("LightGCN", "LightGCN", "tiny", config_dict=dict(common, seed=7), out_dir=str(tmp_path / "c"),
                      **kwargs)
    assert _trials(other_seed, "learning_rate", "reg_weight") != trained

    # more trials asked than the grid has: each setting once, and stderr says so
    capsys.readouterr()
    del fake.calls[:]
    whole = tune("LightGCN", "LightGCN", "tiny", config_dict=common, out_dir=str(tmp_path / "d"),
                 **dict(kwargs, max_evals=20))
    assert sorted(_trials(whole, "learning_rate", "reg_weight")) == sorted(itertools.product(
        [0.1, 0.2, 0.3], [0.01, 0.02, 0.03])) and len(fake.calls) == 9
    err = capsys.readouterr().err
    assert "random search tries 9 distinct settings, not max_evals=20: the grid has 9" in err
    assert "trial 9/9 " in err


def test_bayes_runs_hyperopts_tpe_through_fmin_seeded(tiny, tmp_path, monkeypatch, replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5, 0.3: 0.1})
    replace_runner("run_recbole_gtc", fake)
    calls = []

    def spy(fn, space, **kwargs):
        calls.append(kwargs)
        return hyperopt.fmin(fn, space, **kwargs)

    monkeypatch.setattr(tune_mod, "fmin", spy)
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2, 0.3]\nreg_weight choice [0.01, 0.02, 0.03]\n")
    kwargs = dict(config_dict=_common(tiny, tmp_path), params_file=params_file, algo="bayes", max_evals=7,
                  early_stop=None)
    first = tune("LightGCN", "LightGCN", "tiny", out_dir=str(tmp_path / "a"), **kwargs)
    assert len(calls) == 1 and calls[0]["algo"] is hyperopt.tpe.suggest and calls[0]["max_evals"] == 7
    assert isinstance(calls[0]["rstate"], np.random.Generator) and isinstance(calls[0]["trials"], hyperopt.Trials)
    assert len(calls[0]["trials"].trials) == 7  # hyperopt's own record: every trial went through fmin
    second = tune("LightGCN", "LightGCN", "tiny", out_dir=str(tmp_path / "b"), **kwargs)
    proposed = _trials(first, "learning_rate", "reg_weight")
    assert len(proposed) == 7 and _trials(second, "learning_rate", "reg_weight") == proposed
    # a setting TPE proposes twice is trained once
    assert len(fake.calls) == 2 * len(set(proposed))
    # exhaustive and random searches do not go through fmin
    tune("LightGCN", "LightGCN", "tiny", out_dir=str(tmp_path / "c"), **dict(kwargs, algo="random"))
    tune("LightGCN", "LightGCN", "tiny", out_dir=str(tmp_path / "d"), **dict(kwargs, algo="exhaustive"))
    assert len(calls) == 2


def test_best_trial_argmax_rules():
    trials = [{"best_valid_score": s} for s in (0.0, 0.2, float("nan"), 0.2, 0.1)]
    assert best_trial(trials, bigger=True) == 1  # a 0.0 first score is a score; ties: earlier
    assert best_trial(trials, bigger=False) == 0
    assert best_trial([{"best_valid_score": float("nan")}], bigger=True) is None


# --------------------------------------------------------------------------- refused grids

@pytest.fixture
def never_trains(monkeypatch, replace_runner):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the search is refused")

    replace_runner("run_recbole_gtc", refuse)


def test_missing_params_file(tmp_path, never_trains):
    default = os.path.join(PROPERTIES_DIR, "hyper", "ItemKNN.hyper")
    with pytest.raises(RecboleGTCError) as err:
        tune("ItemKNN", "ItemKNN", "tiny", out_dir=str(tmp_path))
    assert str(err.value).startswith(f"{default}: no hyper-parameter grid for model ItemKNN")
    assert "params_file" in str(err.value)
    with pytest.raises(RecboleGTCError, match="nothing.hyper: params file not found"):
        tune("BPR", "BPR", "tiny", params_file=str(tmp_path / "nothing.hyper"), out_dir=str(tmp_path))


def test_grid_key_fixed_by_the_spec_is_refused(tiny, tmp_path, never_trains):
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2]\nuse_tc choice [True, False]\n")
    with pytest.raises(RecboleGTCError, match=r"searches 'use_tc', which the spec GTC\[use_tc=False\] fixes to False"):
        tune("GTC[use_tc=False]", "GTC", "tiny", config_dict={**_common(tiny, tmp_path), "use_tc": False},
             params_file=params_file, out_dir=str(tmp_path))


def test_grid_key_on_the_command_line_is_refused(tiny, tmp_path, never_trains):
    params_file = _grid(tmp_path, "learning_rate choice [0.1, 0.2]\n")
    with pytest.raises(RecboleGTCError, match="--learning_rate on the command line fixes 'learning_rate'"):
        tune("BPR", "BPR", "tiny", config_dict=_common(tiny, tmp_path), cmd_args=["--learning_rate=0.01"],
             params_file=params_file, out_dir=str(tmp_path))


def test_unknown_key_or_bad_value_in_the_grid_is_refused_before_training(tiny, tmp_path, never_trains):
    unknown = _grid(tmp_path, "learning_rat choice [0.1, 0.2]\n", "unknown.hyper")
    with pytest.raises(RecboleGTCError, match="unknown.hyper: unknown key 'learning_rat'"):
        tune("BPR", "BPR", "tiny", config_dict=_common(tiny, tmp_path), params_file=unknown, out_dir=str(tmp_path))
    bad = _grid(tmp_path, "learning_rate choice [0.1, -1.0]\n", "bad.hyper")
    with pytest.raises(RecboleGTCError, match=r"bad.hyper: learning_rate=-1.0"):
        tune("BPR", "BPR", "tiny", config_dict=_common(tiny, tmp_path), params_file=bad, out_dir=str(tmp_path))
    continuous = _grid(tmp_path, "learning_rate loguniform -9,-4\n", "cont.hyper")
    with pytest.raises(RecboleGTCError, match="exhaustive search needs 'choice' lines only"):
        tune("BPR", "BPR", "tiny", config_dict=_common(tiny, tmp_path), params_file=continuous,
             out_dir=str(tmp_path))


def test_a_spec_override_beats_the_users_key_as_in_the_comparison(tiny, tmp_path, monkeypatch, replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5})
    replace_runner("run_recbole_gtc", fake)
    # the spec BPR[reg_weight=0.5] with the user's --reg_weight=0.01: the spec's value is searched
    tune("BPR[reg_weight=0.5]", "BPR", "tiny", config_dict=dict(_common(tiny, tmp_path), reg_weight=0.5),
         cmd_args=["--reg_weight=0.01"], params_file=_grid(tmp_path, "learning_rate choice [0.1, 0.2]\n"),
         out_dir=str(tmp_path / "out"))
    assert [call["reg_weight"] for call in fake.calls] == [0.5, 0.5]


def test_a_changed_package_default_is_searched_again(tiny, tmp_path, monkeypatch, replace_runner):
    fake = FakeRuns({0.1: 0.3, 0.2: 0.5})
    replace_runner("run_recbole_gtc", fake)
    kwargs = dict(config_dict=_common(tiny, tmp_path), params_file=_grid(tmp_path, "learning_rate choice [0.1, 0.2]\n"),
                  out_dir=str(tmp_path / "out"))
    assert not tune("BPR", "BPR", "tiny", **kwargs)["cached"]
    original = quick_start.load_config

    def other_default(*args, **kw):  # as if properties/overall.yaml now said stopping_step: 7
        config = original(*args, **kw)
        config["stopping_step"] = 7
        return config

    replace_runner("load_config", other_default)
    assert not tune("BPR", "BPR", "tiny", **kwargs)["cached"] and len(fake.calls) == 4
