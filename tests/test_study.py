"""Comparison studies: specs and seeds, the per-user values behind the Wilcoxon test, the run
cache, an interrupted study, and the command line (tables equal the individual runs)."""

import csv
import json
import os

import numpy as np
import pytest

from recbole_gtc.cli import main
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.study import compare as compare_module
from recbole_gtc.study.spec import Spec, parse_seeds, parse_specs
from recbole_gtc.trainer.run import load_per_user
from recbole_gtc.utils.errors import RecboleGTCError


def _args(tiny, tmp_path, epochs=2):
    return [f"--data_path={tiny}", f"--checkpoint_dir={tmp_path / 'saved'}", f"--epochs={epochs}",
            "--graph_cache_dir=None"]


# ---------------------------------------------------------------- specs and seeds
def test_specs_split_on_top_level_commas_and_keep_variant_labels():
    specs = parse_specs("GTC, GTC[use_tc=False,use_gate=False] ,LightGCN,GTC[tc_mode=pairwise]")
    assert [s.label for s in specs] == ["GTC", "GTC[use_tc=False,use_gate=False]", "LightGCN", "GTC[tc_mode=pairwise]"]
    assert specs[1] == Spec("GTC[use_tc=False,use_gate=False]", "GTC", (("use_tc", "False"), ("use_gate", "False")))
    assert specs[1].cmd_args() == ["--use_tc=False", "--use_gate=False"]
    assert specs[1].config_dict() == {"use_tc": False, "use_gate": False}
    assert Spec("X", "X", (("lr", "1e-3"), ("w", "[1, 2]"), ("m", "pairwise"))).config_dict() == {
        "lr": 0.001, "w": [1, 2], "m": "pairwise"}


@pytest.mark.parametrize("text, problem", [
    ("GTC[use_tc=False", "unbalanced '['"), ("GTC]", "unbalanced ']'"), ("GTC[use_tc]", "not key=value"),
    ("GTC[]", "empty brackets"), ("GTC,GTC", "named twice"), (" , ", "no model"), ("GTC=1", "cannot read"),
])
def test_bad_specs_are_one_line_errors(text, problem):
    with pytest.raises(RecboleGTCError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_specs(text)


def test_seeds_are_a_count_from_the_configured_seed_or_a_list():
    assert parse_seeds("3", 999) == [999, 1000, 1001]
    assert parse_seeds("1, 5,2", 999) == [1, 5, 2]
    assert parse_seeds("999,", 1) == [999]
    with pytest.raises(RecboleGTCError, match="--seeds=999, .a list. or --seed=999 --seeds=1"):
        parse_seeds("999", 1)  # one seed written as a count would start 999 runs
    for bad in ("0", "x", "1,1", "1,a"):
        with pytest.raises(RecboleGTCError):
            parse_seeds(bad, 999)


# ---------------------------------------------------------------- per-user values
def test_per_user_values_average_to_recbole_metrics_and_follow_the_users(tmp_path, tiny):
    config = load_config("BPR", "tiny", cmd_args=_args(tiny, tmp_path))
    result = run_recbole_gtc("BPR", "tiny", config=config)
    users, values = load_per_user(os.path.join(result["run_dir"], "test_per_user.npz"))
    assert users == result["users"] and len(users) == len(set(users)) > 100
    for metric in ("recall@10", "recall@20", "ndcg@20", "precision@5", "map@50"):
        assert round(float(np.mean(values[metric])), 4) == pytest.approx(result["test_result"][metric], abs=1e-9)
    # Recall@20 of one user, recomputed from the model's own ranking and the test file.
    from recbole_gtc.data import create_dataset, data_preparation

    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    import torch
    from recbole.model.general_recommender import BPR

    model = BPR(config, train.dataset)
    model.load_state_dict(torch.load(os.path.join(result["run_dir"], "best.pth"), weights_only=False)["state_dict"])
    uid = dataset.token2id(dataset.uid_field, users[7])
    scores = model.full_sort_predict({dataset.uid_field: torch.tensor([uid])}).detach().view(-1)
    inter = train.dataset.inter_feat
    scores[inter[dataset.iid_field][inter[dataset.uid_field] == uid]] = -np.inf  # mmrec: mask training items
    scores[0] = -np.inf
    top = set(torch.topk(scores, 20).indices.tolist())
    tinter = test.dataset.inter_feat
    positives = set(tinter[dataset.iid_field][tinter[dataset.uid_field] == uid].tolist())
    assert values["recall@20"][7] == pytest.approx(len(top & positives) / len(positives))


# ---------------------------------------------------------------- the study
def _individual(model, seed, tiny, tmp_path):
    config = load_config(model, "tiny", cmd_args=_args(tiny, tmp_path) + [f"--seed={seed}"])
    return run_recbole_gtc(model, "tiny", config=config)["test_result"]


def test_study_tables_equal_the_individual_runs_and_the_cache_skips_them(tmp_path, tiny, monkeypatch, capsys,
                                                                          replace_runner):
    results = tmp_path / "results"
    code = main(["--model=BPR,LightGCN[n_layers=1]", "--dataset=tiny", "--seeds=5,6",
                 f"--results_dir={results}"] + _args(tiny, tmp_path))
    assert code == 0
    out = capsys.readouterr()
    assert "[study] [4/4] LightGCN[n_layers=1] seed 6: test recall@10=" in out.err
    folder = results / "tiny"
    for name in ("comparison.md", "comparison.csv", "runs.csv", "comparison.png"):
        assert (folder / name).stat().st_size > 0
    assert open(folder / "comparison.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with open(folder / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["label"], int(r["seed"])) for r in rows) == [
        ("BPR", 5), ("BPR", 6), ("LightGCN[n_layers=1]", 5), ("LightGCN[n_layers=1]", 6)]
    for row in rows:  # two epochs: each run's time is its second epoch's, the warm-up left out
        with open(tmp_path / "saved" / row["run_id"] / "run.json") as handle:
            seconds = json.load(handle)["result"]["epoch_seconds"]
        assert len(seconds) == 2 and float(row["train_seconds_per_epoch"]) == seconds[1]

    alone = {("BPR", s): _individual("BPR", s, tiny, tmp_path / "alone") for s in (5, 6)}
    for s in (5, 6):
        config = load_config("LightGCN", "tiny", cmd_args=_args(tiny, tmp_path / "alone") + ["--n_layers=1", f"--seed={s}"])
        alone[("LightGCN[n_layers=1]", s)] = run_recbole_gtc("LightGCN", "tiny", config=config)["test_result"]
    for row in rows:
        expected = alone[(row["label"], int(row["seed"]))]
        for metric in ("recall@20", "ndcg@10"):
            assert float(row[metric]) == pytest.approx(expected[metric], abs=1e-12)
    with open(folder / "comparison.csv") as handle:
        summary = {r["label"]: r for r in csv.DictReader(handle)}
    mean = np.mean([alone[("BPR", s)]["recall@20"] for s in (5, 6)])
    assert float(summary["BPR"]["recall@20_mean"]) == pytest.approx(mean, abs=1e-9)
    assert f"{mean:.4f}" in out.out  # the printed Markdown table

    # Again: every run comes from the cache, nothing trains.
    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    replace_runner("run_recbole_gtc", no_training)
    assert main(["--model=BPR,LightGCN[n_layers=1]", "--dataset=tiny", "--seeds=5,6",
                 f"--results_dir={results}"] + _args(tiny, tmp_path)) == 0
    assert capsys.readouterr().err.count("done before") == 4
    # --report_only trains nothing and leaves out what has not run.
    assert main(["--model=BPR,LightGCN[n_layers=1],LightGCN", "--dataset=tiny", "--seeds=5,6,7", "--report_only",
                 f"--results_dir={results}"] + _args(tiny, tmp_path)) == 0
    out = capsys.readouterr()
    assert out.err.count("not finished, left out of the report") == 5 and "LightGCN seed 5" in out.err
    assert "| BPR (reference) | 2 |" in out.out and "| LightGCN |" not in out.out
    # ... but never with another model as the reference than the first one named
    assert main(["--model=LightGCN,BPR", "--dataset=tiny", "--seeds=5,6", "--report_only",
                 f"--results_dir={results}"] + _args(tiny, tmp_path)) == 2
    assert "LightGCN: the first model, the reference of the tables, has no finished run yet" in capsys.readouterr().err
    # A changed configuration is another run.
    with pytest.raises(AssertionError, match="trained again"):
        main(["--model=BPR", "--dataset=tiny", "--seeds=5", f"--results_dir={results}", "--learning_rate=0.002"]
             + _args(tiny, tmp_path))


def test_an_interrupted_study_continues_to_the_uninterrupted_numbers(tmp_path, tiny, monkeypatch, replace_runner):
    from recbole_gtc.trainer.trainer import MMTrainer

    args = _args(tiny, tmp_path, epochs=4) + ["--stopping_step=100"]
    whole = compare_module.run_study("BPR,GTC", "tiny", "3", cmd_args=args, results_dir=str(tmp_path / "w"))

    args = _args(tiny, tmp_path / "k", epochs=4) + ["--stopping_step=100"]
    original = MMTrainer._save_resume_state
    calls = []

    def killed_after_epoch_2_of_gtc(self, epoch_idx):
        original(self, epoch_idx)
        if self.config["model"] == "GTC" and epoch_idx == 1:
            raise KeyboardInterrupt  # the study is killed in the middle of GTC's run

    monkeypatch.setattr(MMTrainer, "_save_resume_state", killed_after_epoch_2_of_gtc)
    with pytest.raises(KeyboardInterrupt):
        compare_module.run_study("BPR,GTC", "tiny", "3", cmd_args=args, results_dir=str(tmp_path / "k"))
    monkeypatch.setattr(MMTrainer, "_save_resume_state", original)

    import recbole_gtc.quick_start.quick_start as quick_start

    real_run = quick_start.run_recbole_gtc

    def counting(model, *a, **kw):
        calls.append(kw.get("resume"))
        return real_run(model, *a, **kw)

    replace_runner("run_recbole_gtc", counting)
    again = compare_module.run_study("BPR,GTC", "tiny", "3", cmd_args=args, results_dir=str(tmp_path / "k"))
    # BPR seed 999 came from the cache, GTC seed 999 continued its run, the other 4 trained anew.
    assert len(calls) == 5 and calls[0] is not None and calls[1:] == [None] * 4
    assert json.load(open(os.path.join(calls[0], "run.json")))["status"] == "finished"
    for a, b in zip(whole["records"], again["records"]):
        assert (a["label"], a["seed"]) == (b["label"], b["seed"])
        assert a["test_result"] == b["test_result"]
        assert np.array_equal(a["per_user"]["recall@20"], b["per_user"]["recall@20"])


def test_study_errors_come_before_any_training(tmp_path, tiny, capsys, monkeypatch, replace_runner):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking")

    replace_runner("run_recbole_gtc", no_training)
    results = f"--results_dir={tmp_path / 'r'}"
    for extra, message in (
        (["--model=BPR,GTC[no_such_key=1]", "--seeds=2", results], "no_such_key"),
        (["--model=BPR", "--seeds=2,4", "--seed=3", results], "--seed and a list of --seeds"),
        (["--model=BPR", "--seeds=0", results], "--seeds=0"),
        (["--model=BPR,GTC[use_tc=False", "--seeds=2", results], "unbalanced"),
        (["--model=GTC[use_tc=False]"], "add --seeds"),
    ):
        code = main(["--dataset=tiny"] + extra + _args(tiny, tmp_path))
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "r" / "tiny" / "runs") or not os.listdir(tmp_path / "r" / "tiny" / "runs")


def test_tune_then_compare_uses_the_best_validation_setting(tmp_path, tiny, capsys):
    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "BPR.hyper").write_text("# a two-point grid\nlearning_rate choice [0.0005, 0.02]\n")
    code = main(["--model=BPR", "--dataset=tiny", "--seed=7", "--seeds=1", "--tune", f"--hyper_dir={grids}",
                 f"--results_dir={tmp_path / 'r'}"] + _args(tiny, tmp_path, epochs=3))
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    tuned = tmp_path / "r" / "tiny" / "tuned"
    with open(next(tuned.glob("BPR*.trials.csv"))) as handle:
        trials = list(csv.DictReader(handle))
    assert len(trials) == 2 and not any("test" in column for column in trials[0])
    valid = {float(t["learning_rate"]): float(t["valid_recall@20"]) for t in trials}
    best = max(valid, key=valid.get)
    assert f"tuned BPR: {{'learning_rate': {best}}}" in err
    record = json.load(open(next((tmp_path / "r" / "tiny" / "runs").glob("*.json"))))
    run_meta = json.load(open(os.path.join(record["run_dir"], "run.json")))
    assert run_meta["config"]["learning_rate"] == best and run_meta["config"]["seed"] == 7
    # --report_only --tune reports the tuned runs, searching and training nothing; plain
    # --report_only would look for the untuned run, which never ran.
    assert main(["--model=BPR", "--dataset=tiny", "--seed=7", "--seeds=1", "--tune", "--report_only",
                 f"--hyper_dir={grids}", f"--results_dir={tmp_path / 'r'}"] + _args(tiny, tmp_path, epochs=3)) == 0
    out = capsys.readouterr()
    assert "done before" in out.err and "trial" not in out.err and "| BPR (reference) | 1 |" in out.out
    assert main(["--model=BPR", "--dataset=tiny", "--seed=7", "--seeds=1", "--report_only",
                 f"--results_dir={tmp_path / 'r'}"] + _args(tiny, tmp_path, epochs=3)) == 2
    assert "no finished run" in capsys.readouterr().err
    assert main(["--model=LightGCN", "--dataset=tiny", "--seeds=7", "--tune", "--report_only",
                 f"--results_dir={tmp_path / 'r'}"] + _args(tiny, tmp_path)) == 2
    assert "no tuned settings for LightGCN" in capsys.readouterr().err
    # No grid for a model in --hyper_dir: one line, nothing trained.
    assert main(["--model=LightGCN", "--dataset=tiny", "--seeds=7", "--tune", f"--hyper_dir={grids}",
                 f"--results_dir={tmp_path / 'r'}"] + _args(tiny, tmp_path)) == 2
    assert "LightGCN.hyper: no grid for LightGCN in --hyper_dir" in capsys.readouterr().err
