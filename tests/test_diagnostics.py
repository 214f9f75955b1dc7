"""Issue 25's diagnostics and the user-conditioned filter: groups that add up, the balance score
at its extremes, a probe that finds a planted block and not a random one, the Gaussian TC in
closed form against Monte Carlo and the bounds never above the truth, the ``users`` condition
(another denoiser input, from training interactions only), per-epoch diagnostics that leave a
run's numbers alone, and the ``diagnose`` command on a tiny run."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from toydata import N_ITEMS, build, features, leak_splits, one_thread, write_dataset  # noqa: F401

from recbole_gtc.diagnose.__main__ import main as diagnose_main
from recbole_gtc.evaluator import tc_bound
from recbole_gtc.evaluator.diagnostics import (_ridge_fit, balance_summary, normalised_entropy, rank_correlation,
                                               ridge_probe, view_score_spread)
from recbole_gtc.evaluator.groups import GROUPINGS, group_table, quantile_groups, user_profiles
from recbole_gtc.prepare.synthetic import generate, make_config, planted_config, planted_truth
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.study.report import group_summary, plot_png, write_report
from recbole_gtc.trainer.run import config_items
from recbole_gtc.utils.errors import RecboleGTCError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = {"epochs": 2, "use_gpu": False, "state": "WARNING", "graph_cache_dir": None, "train_batch_size": 256}


# ----------------------------------------------------------------- who gains: groups
def _profiles(users, rng):
    return {u: {"activity": int(rng.integers(5, 9)), "popularity": float(rng.choice([1.0, 2.5, 7.0, 30.0]))}
            for u in users}


def test_group_means_weighted_by_group_size_add_up_to_the_overall_metric():
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(503)]
    values = {"recall@20": rng.choice([0.0, 0.5, 1.0], size=503), "ndcg@20": rng.random(503)}
    rows = group_table(users, values, _profiles(users, rng))
    for grouping in GROUPINGS:
        part = [r for r in rows if r["grouping"] == grouping]
        assert sum(r["n_users"] for r in part) == len(users)
        for metric, v in values.items():
            total = sum(r["share"] * r[metric] for r in part)
            assert total == pytest.approx(float(np.mean(v)), abs=1e-12)
            assert sum(r["n_users"] * r[metric] for r in part) / len(users) == pytest.approx(np.mean(v), abs=1e-12)


def test_quantile_groups_keep_equal_values_together():
    values = np.array([5, 5, 5, 5, 5, 6, 7, 8, 9, 30, np.nan])
    groups, _ = quantile_groups(values, 5)
    assert groups[-1] == -1
    assert len(set(groups[:5])) == 1  # ties never split
    assert list(groups[:-1]) == sorted(groups[:-1])


def test_user_profiles_count_training_pairs_once_and_average_test_item_popularity():
    profiles = user_profiles(["a", "a", "a", "b"], ["1", "1", "2", "1"], ["a", "a", "b", "c"], ["1", "2", "9", "1"])
    assert profiles["a"] == {"activity": 2, "popularity": 1.5}  # item 1: 2 users, item 2: 1 user
    assert profiles["b"]["activity"] == 1 and profiles["b"]["popularity"] == 0.0  # item 9 unseen in training
    assert profiles["c"] == {"activity": 0, "popularity": 2.0}


def test_study_report_tables_and_disparity_panel(tmp_path):
    rng = np.random.default_rng(1)
    users = [str(i) for i in range(60)]
    records = []
    for label, shift in (("A", 0.0), ("B", 0.1)):
        for seed in (1, 2):
            per_user = {"recall@20": np.clip(rng.random(60) + shift, 0, 1), "ndcg@20": rng.random(60)}
            records.append({"label": label, "model": label, "dataset": "toy", "seed": seed, "run_id": f"{label}{seed}",
                            "test_result": {m: float(v.mean()) for m, v in per_user.items()}, "epochs": 3,
                            "train_seconds_per_epoch": 1.0, "users": users, "per_user": per_user})
    profiles = _profiles(users, rng)
    report = write_report(records, ["recall@20", "ndcg@20"], str(tmp_path / "r"), "T", profiles=profiles)
    assert os.path.isfile(report["groups_csv"]) and "## Who gains" in report["markdown"]
    groups = group_summary(records, profiles, ["recall@20"])
    a = [g for g in groups if g["label"] == "A" and g["grouping"] == "activity"]
    overall = np.mean([r["test_result"]["recall@20"] for r in records if r["label"] == "A"])
    assert sum(g["n_users"] * g["recall@20_mean"] for g in a) / 60 == pytest.approx(overall, abs=1e-12)
    fig = plot_png(str(tmp_path / "p.png"), report["summary"], ["recall@20"], "T", groups=groups)
    assert len(fig.axes) == 3 and len(fig.axes[2].lines) == 2


# ----------------------------------------------------------------- balance
def test_balance_score_at_its_extremes():
    assert normalised_entropy([1.0, 0.0]) == 0.0
    assert normalised_entropy([0.0, 0.0, 4.0]) == 0.0
    assert normalised_entropy([0.5, 0.5]) == pytest.approx(1.0)
    assert normalised_entropy([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert 0 < normalised_entropy([0.9, 0.1]) < 1
    assert np.isnan(normalised_entropy([0.0, 0.0]))


def test_balance_of_representations_with_one_modality_only_and_with_equal_ones():
    torch.manual_seed(0)
    d, views = 4, ["id", "image", "text"]
    users, items = torch.randn(30, 3 * d), torch.randn(20, 3 * d)
    only_image = items.clone()
    only_image[:, 2 * d:] = 0  # the text view cannot move any score
    assert balance_summary(view_score_spread(users, only_image, 3), views, ["image", "text"])["balance"] == 0.0
    same = items.clone()
    same[:, 2 * d:] = same[:, d:2 * d]
    twin = users.clone()
    twin[:, 2 * d:] = twin[:, d:2 * d]
    summary = balance_summary(view_score_spread(twin, same, 3), views, ["image", "text"])
    assert summary["balance"] == pytest.approx(1.0)
    assert summary["share/image"] == pytest.approx(summary["share/text"])


def test_view_score_spread_is_the_std_of_each_views_scores():
    torch.manual_seed(1)
    users, items = torch.randn(7, 6), torch.randn(9, 6)
    spread = view_score_spread(users, items, 2)
    for v in range(2):
        scores = users[:, 3 * v:3 * v + 3].double() @ items[1:, 3 * v:3 * v + 3].double().T
        np.testing.assert_allclose(spread[:, v], scores.std(dim=1, unbiased=False).numpy(), rtol=1e-6)


# ----------------------------------------------------------------- the probe
@pytest.fixture(scope="module")
def planted():
    return generate(make_config("small", users=200, items=600, image_dim=64, text_dim=32))


def test_probe_recovers_a_planted_block_and_not_a_random_one(planted):
    image = planted.features["image"]
    visual = ridge_probe(image, planted.latents.visual)["r2"]
    nuisance = ridge_probe(image, planted.latents.nuisance)["r2"]
    random = ridge_probe(image, np.random.default_rng(5).standard_normal((600, 8)))["r2"]
    unseen = ridge_probe(image, planted.latents.textual)["r2"]  # the image never shows the textual block
    assert visual > 0.5 and nuisance > 0.5
    assert abs(random) < 0.05 and abs(unseen) < 0.05


def test_closed_form_leave_one_out_matches_refitting():
    """The penalty the closed-form leave-one-out error picks is the one refitting each left-out
    row (with its own centring) picks, with more features than rows and with fewer."""
    rng = np.random.default_rng(2)
    for n_features in (80, 6):
        x = rng.standard_normal((25, n_features))
        y = x[:, :2] @ rng.standard_normal((2, 3)) * (n_features < 25) + rng.standard_normal((25, 3))
        grid = (1e-3, 1e-1, 1.0, 10.0, 1e3)
        xc, yc = x - x.mean(0), y - y.mean(0)
        scale = float(np.mean(np.linalg.svd(xc, compute_uv=False) ** 2))
        brute = []
        for rel in grid:
            err = 0.0
            for i in range(len(x)):
                keep = np.arange(len(x)) != i
                a, b = x[keep] - x[keep].mean(0), y[keep] - y[keep].mean(0)
                w = np.linalg.solve(a.T @ a + rel * scale * np.eye(n_features), a.T @ b)
                err += float((((x[i] - x[keep].mean(0)) @ w + y[keep].mean(0) - y[i]) ** 2).sum())
            brute.append(err)
        _, alpha = _ridge_fit(xc, yc, grid=grid)
        assert alpha == pytest.approx(grid[int(np.argmin(brute))] * scale)


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))


# ----------------------------------------------------------------- the planted truth
def test_planted_truth_regenerates_the_bundled_dataset():
    latents = planted_truth(os.path.join(REPO, "dataset", "synth-mm"))
    cfg = planted_config(os.path.join(REPO, "dataset", "synth-mm"))
    assert latents.visual.shape == (cfg.items, cfg.visual_rank) and latents.user_weight.shape == (cfg.users,)
    assert planted_truth(os.path.join(REPO, "dataset", "ml-100k-mm")) is None


def test_planted_truth_refuses_an_edited_training_file(tiny, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(os.path.join(tiny, "tiny"), folder)
    assert planted_truth(str(folder)) is not None
    lines = (folder / "tiny.train.inter").read_text().splitlines(keepends=True)
    (folder / "tiny.train.inter").write_text("".join(lines[:-1]))
    with pytest.raises(RecboleGTCError, match="differ"):
        planted_truth(str(folder))


# ----------------------------------------------------------------- the TC bound
@pytest.mark.parametrize("rho, n_views", [(0.2, 2), (0.6, 3), (0.9, 3), (0.5, 4)])
def test_gaussian_tc_closed_form_matches_monte_carlo(rho, n_views):
    truth = tc_bound.gaussian_tc(rho, n_views, dim=3)
    estimate, se = tc_bound.monte_carlo_tc(rho, n_views, dim=3, n=100_000, seed=1)
    assert abs(estimate - truth) < 4 * se


def test_two_views_tc_is_their_mutual_information():
    assert tc_bound.gaussian_tc(0.7, 2, 5) == pytest.approx(tc_bound.pairwise_mi_sum(0.7, 2, 5))


@pytest.mark.parametrize("rho, n", [(0.3, 32), (0.3, 256), (0.85, 64)])
def test_bounds_are_never_above_the_truth(rho, n):
    row = tc_bound.bound_row(rho, n, n_views=3, dim=4, repeats=4, seed=3)
    for key, truth in (("symile_optimal", row["tc_true"]), ("symile_gtc", row["tc_true"]),
                       ("pairwise_optimal", row["pairwise_mi_true"]), ("pairwise_gtc", row["pairwise_mi_true"])):
        assert row[key] <= truth + 3 * row[f"{key}_se"] + 1e-9, key
    assert row["symile_optimal"] <= math.log(n) + 1e-9
    if row["tc_true"] < 0.25 * math.log(n):  # far from the log n ceiling the optimal critic is nearly tight
        assert row["symile_optimal"] > 0.6 * row["tc_true"]


def test_tc_bound_command_writes_table_and_plot(tmp_path):
    out = tmp_path / "bound"
    assert diagnose_main(["tc-bound", "--out", str(out), "--rhos", "0.5", "--batch-sizes", "16,32", "--dim", "2",
                          "--repeats", "2"]) == 0
    for name in ("tc_bound.csv", "tc_bound.md", "tc_bound.png"):
        assert (out / name).is_file()
    assert len((out / "tc_bound.csv").read_text().splitlines()) == 3


# ----------------------------------------------------------------- the user-conditioned filter
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    write_dataset(root, "clean", leak_splits(), features(("image", "text")), N_ITEMS)
    write_dataset(root, "poisoned", leak_splits(poison=True), features(("image", "text")), N_ITEMS)
    return root


def _denoiser_inputs(model):
    """The condition each denoiser receives in one eval-mode forward pass."""
    seen = {}
    hooks = [model.denoisers[m].register_forward_pre_hook(lambda mod, args, m=m: seen.__setitem__(m, args[2].clone()))
             for m in model.modalities]
    model.eval()
    with torch.no_grad():
        model.forward()
    for hook in hooks:
        hook.remove()
    return seen


def _gtc(root, name, **overrides):
    return build(root, name, "GTC", **dict({"train_batch_size": 64, "user_graph_k": 5, "knn_k": 4}, **overrides))


def test_users_condition_changes_the_denoiser_input_to_the_training_users_mean(toy):
    item, _ = _gtc(toy, "clean")
    users, train = _gtc(toy, "clean", diffusion_condition="users")
    seen_item, seen_users = _denoiser_inputs(item), _denoiser_inputs(users)
    assert torch.equal(seen_item["image"], item.item_id_embedding.weight)
    ds = train.dataset
    r = torch.zeros(users.n_items, users.n_users)
    r[ds.inter_feat["item_id"], ds.inter_feat["user_id"]] = 1.0
    for m in users.modalities:
        prefs = torch.nn.functional.normalize(users.user_preference[m].detach(), dim=1)
        expected = (r @ prefs) / r.sum(1, keepdim=True).clamp_min(1) * math.sqrt(users.embedding_size)
        torch.testing.assert_close(seen_users[m], expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(seen_users[m], users.item_id_embedding.weight)
    assert not torch.equal(seen_users["image"], seen_users["text"])  # each modality's own preferences
    # and it trains the users' preference rows through the diffusion loss
    users.train()
    users.forward()["diff_loss"].backward()
    assert users.user_preference["image"].grad.abs().sum() > 0


def test_users_condition_uses_training_interactions_only(toy):
    clean, _ = _gtc(toy, "clean", diffusion_condition="users")
    poisoned, _ = _gtc(toy, "poisoned", diffusion_condition="users")
    assert torch.equal(clean.item_user_mean.to_dense(), poisoned.item_user_mean.to_dense())
    a, b = _denoiser_inputs(clean), _denoiser_inputs(poisoned)
    assert all(torch.equal(a[m], b[m]) for m in a)


def test_new_keys_at_their_defaults_keep_the_cached_fingerprints(tiny, tmp_path):
    where = {"data_path": tiny, "checkpoint_dir": str(tmp_path / "saved"), "graph_cache_dir": None}
    default = config_items(load_config("GTC", "tiny", config_dict=where))
    assert "diffusion_condition" not in default and "diagnostics" not in default
    changed = config_items(load_config("GTC", "tiny", config_dict=dict(where, diagnostics=True,
                                                                       diffusion_condition="users")))
    assert changed["diffusion_condition"] == "'users'" and changed["diagnostics"] == "True"
    with pytest.raises(RecboleGTCError, match="diffusion_condition"):
        load_config("GTC", "tiny", config_dict=dict(where, diffusion_condition="user"))


# ----------------------------------------------------------------- per-epoch diagnostics and the command
def test_diagnostics_leave_the_run_alone_and_the_command_reports_it(tiny, tmp_path):
    common = dict(RUN, data_path=tiny, checkpoint_dir=str(tmp_path / "saved"))
    plain = run_recbole_gtc("GTC", "tiny", config_dict=common)
    run = run_recbole_gtc("GTC", "tiny", config_dict=dict(common, diagnostics=True))
    assert run["test_result"] == plain["test_result"] and plain["diagnostics"] is None
    assert [e["epoch"] for e in run["diagnostics"]] == [0, 1]
    keys = {"balance", "share/image", "recon/image", "eps_mse/text", "tc_bound", "seconds"}
    assert keys <= set(run["diagnostics"][0])
    assert all(0 <= e["balance"] <= 1 and e["tc_bound"] <= math.log(79) for e in run["diagnostics"])
    with open(os.path.join(run["run_dir"], "run.json")) as handle:
        stored = json.load(handle)["result"]
    assert stored["diagnostics"] == run["diagnostics"]
    groups = stored["test_groups"]
    for grouping in GROUPINGS:  # RecBole rounds its metrics to 4 decimals
        part = [g for g in groups if g["grouping"] == grouping]
        weighted = sum(g["share"] * g["recall@20"] for g in part)
        assert weighted == pytest.approx(run["test_result"]["recall@20"], abs=6e-5)
    assert os.path.isfile(os.path.join(run["run_dir"], "test_groups.csv"))

    out = tmp_path / "diag"
    assert diagnose_main(["run", run["run_dir"], "--out", str(out)]) == 0
    for name in ("diagnose.md", "diagnose.png", "groups.csv", "probes.csv", "users.csv", "epochs.csv"):
        assert (out / name).is_file(), name
    text = (out / "diagnose.md").read_text()
    for heading in ("## Who gains", "## The filter", "## User-awareness", "## Modality balance"):
        assert heading in text
    probes = (out / "probes.csv").read_text()
    assert "relevant" in probes and "nuisance" in probes and "filtered" in probes
    assert diagnose_main(["run", str(tmp_path / "nowhere")]) == 2
