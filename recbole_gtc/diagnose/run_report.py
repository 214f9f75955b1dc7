"""Diagnostics of one finished run: ``python -m recbole_gtc.diagnose run RUN_DIR [--out DIR]``.

From the run folder (``run.json``, ``test_per_user.npz``, ``best.pth``) and its dataset, and
for what the run's model has (docs/diagnostics.md defines every number):

* **who gains**: the test metrics per user-activity and test-item-popularity quintile
  (:mod:`recbole_gtc.evaluator.groups`), any model;
* **the filter** (multi-modal models): GTC's reconstruction error per modality, and the
  out-of-sample R-squared of ridge probes (:func:`~recbole_gtc.evaluator.diagnostics.ridge_probe`)
  from the raw, projected and filtered features onto the items' interaction embedding (any
  data) and, on planted data, onto the planted preference-relevant block, the nuisance and a
  random control block;
* **user-awareness** (planted data): Spearman correlation of each user's learned visual
  weighting with the planted ``w_u``;
* **balance and the TC bound**: at the best checkpoint, and per epoch when the run was trained
  with ``diagnostics: True``.

Writes ``diagnose.md``, ``groups.csv``, ``probes.csv``, ``users.csv``, ``epochs.csv`` (when
per-epoch values exist) and ``diagnose.png`` into ``--out`` (default ``RUN_DIR/diagnose``).
"""

import json
import os

import numpy as np
import torch

from recbole_gtc.diagnose import progress
from recbole_gtc.diagnose.figures import empty_panel, fmt, new_figure, save_png, table, write_csv, write_text
from recbole_gtc.evaluator.diagnostics import interaction_embedding, rank_correlation, ridge_probe, view_score_spread
from recbole_gtc.evaluator.groups import GROUPINGS, group_table
from recbole_gtc.prepare.synthetic import planted_truth
from recbole_gtc.quick_start.quick_start import split_profiles
from recbole_gtc.quick_start.recommend import build_model, load_splits, quiet_info_logs
from recbole_gtc.trainer.run import PER_USER_FILE, RUN_FILE, load_per_user
from recbole_gtc.utils.compat import quiet_library_warnings
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.files import check_output_dir, expand_path

#: The planted block each modality of the generator sees (recbole_gtc.prepare.synthetic).
PLANTED_BLOCKS = {"image": "visual", "text": "textual"}
#: Metrics of the group table and figure (others are in groups.csv).
GROUP_METRICS = ("recall@20", "ndcg@20")
PROBE_SEED = 0
INTERACTION_RANK = 16


def _read_run(run_dir):
    path = os.path.join(run_dir, RUN_FILE)
    try:
        with open(path) as handle:
            return json.load(handle)
    except OSError:
        raise RecboleGTCError(f"{run_dir}: not a run folder (no {RUN_FILE})") from None
    except ValueError:
        raise RecboleGTCError(f"{path}: unreadable run file") from None


def _numpy(t):
    return t.detach().float().cpu().numpy()


def feature_sets(model):
    """``{modality: {"raw": X, "projected": F, "filtered": G}}`` as numpy ``(n_items, .)`` (row 0
    padding), from the model in eval mode (the evaluation's filter); ``filtered`` only for GTC
    with its filter. Empty for a model without modality features."""
    modalities = getattr(model, "modalities", None)
    if not modalities or not hasattr(model, "content_views"):
        return {}
    with torch.no_grad():
        out = model.forward()
        projected = out["projected"] if isinstance(out, dict) else model.content_views()
        denoised = out.get("denoised") if isinstance(out, dict) and getattr(model, "use_diffusion", False) else None
    sets = {}
    for m in modalities:
        sets[m] = {"raw": _numpy(getattr(model, f"feat_{m}")), "projected": _numpy(projected[m])}
        if denoised is not None:
            sets[m]["filtered"] = _numpy(denoised[m])
    return sets


def _item_rows(dataset, n_items):
    """Generator row of each internal item id 1.. (tokens are the generator's indices)."""
    tokens = dataset.id2token(dataset.iid_field, np.arange(1, n_items))
    return np.asarray([int(t) for t in tokens])


def _user_rows(dataset, n_users):
    tokens = dataset.id2token(dataset.uid_field, np.arange(1, n_users))
    return np.asarray([int(t) for t in tokens])


def probe_targets(train, latents, n_items):
    """Probe targets ``name -> (target (n_items, k), rows, modality or None)``; ``rows`` are the
    internal item ids scored. ``interactions`` always; with planted ``latents``, each modality's
    planted block, the nuisance and a random control block (seeded standard normal)."""
    users = train.inter_feat[train.uid_field].numpy()
    items = train.inter_feat[train.iid_field].numpy()
    emb, rows = interaction_embedding(users, items, train.user_num, n_items, rank=INTERACTION_RANK)
    targets = {"interactions": (emb, rows[rows >= 1], None)}
    if latents is not None:
        gen = _item_rows(train, n_items)
        real = np.arange(1, n_items)

        def lift(block):
            out = np.zeros((n_items, block.shape[1]))
            out[1:] = block[gen]
            return out

        for modality, block in PLANTED_BLOCKS.items():
            targets[f"relevant:{modality}"] = (lift(getattr(latents, block)), real, modality)
        targets["nuisance"] = (lift(latents.nuisance), real, None)
        control = np.random.default_rng(PROBE_SEED).standard_normal((n_items, latents.nuisance.shape[1]))
        targets["random"] = (control, real, None)
    return targets


def run_probes(sets, targets, report=None):
    """One row per (modality, feature set, target): the ridge probe's R-squared; a planted
    relevant block is probed only from its own modality's features (``relevant``)."""
    rows = []
    jobs = []
    for m, feats in sets.items():
        for target_name, (target, items, only) in targets.items():
            if only is not None and only != m:
                continue
            for set_name, x in feats.items():
                jobs.append((m, set_name, target_name.split(":")[0], x, target, items))
    for i, (m, set_name, target_name, x, target, items) in enumerate(jobs, 1):
        if report is not None:
            report(f"probe {i}/{len(jobs)}: {m} {set_name} -> {target_name}")
        result = ridge_probe(x, target, rows=items, seed=PROBE_SEED)
        rows.append({"modality": m, "features": set_name, "target": target_name, **result})
    return rows


def user_awareness(model, train, latents, spread=None):
    """Per-user learned visual weighting against the planted ``w_u``: rows of users.csv and the
    Spearman correlations ``{measure: rho}``.

    Measures (both over the image and text views only): ``view_weight``, the share
    ``|w_u,image| / (|w_u,image| + |w_u,text|)`` of the model's per-user view weights; and
    ``score_share``, the image view's share of what moves the user's scores
    (:func:`~recbole_gtc.evaluator.diagnostics.view_score_spread`).
    """
    views = list(getattr(model, "views", []))
    if latents is None or not {"image", "text"} <= set(views) or not hasattr(model, "user_view_weight"):
        return [], {}
    n_users = model.n_users
    gen = _user_rows(train, n_users)
    planted = latents.user_weight[gen]
    w = model.user_view_weight.detach().abs().double().cpu().numpy()[1:]
    i, t = views.index("image"), views.index("text")
    with np.errstate(invalid="ignore", divide="ignore"):
        view_share = w[:, i] / (w[:, i] + w[:, t])
    measures = {"view_weight": view_share}
    if spread is not None:
        s = spread[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            measures["score_share"] = s[:, i] / (s[:, i] + s[:, t])
    tokens = train.id2token(train.uid_field, np.arange(1, n_users))
    rows = [{"user": str(u), "planted_w": float(p), **{k: float(v[j]) for k, v in measures.items()}}
            for j, (u, p) in enumerate(zip(tokens, planted))]
    return rows, {k: rank_correlation(v, planted) for k, v in measures.items()}


def diagnose_run(run_dir, out_dir=None, data_path=None):
    """Compute and write the diagnostics of the run folder ``run_dir``.

    Returns:
        dict: ``markdown`` and the written paths (``md``, ``png``, ``groups_csv``, ...), plus the
        computed parts: ``groups``, ``probes``, ``awareness``, ``recon``, ``balance``, ``epochs``.
    """
    run_dir = expand_path(run_dir)
    meta = _read_run(run_dir)
    out_dir = check_output_dir(out_dir or os.path.join(run_dir, "diagnose"), "--out")
    result = meta.get("result") or {}
    progress(f"{meta.get('model')} on {meta.get('dataset')}: rebuilding the run's data and model")
    with quiet_library_warnings(), quiet_info_logs():
        path, state, config, (train, _, test) = load_splits(run_dir, data_path)
        model = build_model(path, state, config, train)
    parts = {"groups": [], "probes": [], "awareness": {}, "recon": {}, "balance": {}, "epochs": []}

    # who gains
    per_user_path = os.path.join(run_dir, PER_USER_FILE)
    if os.path.isfile(per_user_path):
        progress("test metrics per user group")
        users, values = load_per_user(per_user_path)
        parts["groups"] = group_table(users, values, split_profiles(train, test))

    latents = planted_truth(config["data_path"], config["dataset"])
    if latents is not None:
        progress("planted dataset: latents regenerated from the generator parameters in its YAML")
    spread = None
    if hasattr(model, "balance"):
        progress("modality balance and the filter at the best checkpoint")
        with torch.no_grad():
            if hasattr(model, "diagnostics"):
                values = model.diagnostics()
                parts["balance"] = {k: v for k, v in values.items() if k == "balance" or k.startswith("share/")}
                parts["recon"] = {k: v for k, v in values.items() if k.startswith(("recon/", "eps_mse/", "tc_bound"))}
            out = model.forward()
            h_users, h_items = (out["user"], out["item"]) if isinstance(out, dict) else out
            spread = view_score_spread(h_users, h_items, len(model.views))
        sets = feature_sets(model)
        targets = probe_targets(train, latents, model.n_items)
        parts["probes"] = run_probes(sets, targets, report=progress)
        rows, parts["awareness"] = user_awareness(model, train, latents, spread)
        parts["awareness_rows"] = rows
    parts["epochs"] = result.get("diagnostics") or []

    paths = _write(out_dir, os.path.basename(os.path.normpath(run_dir)), meta, parts, latents is not None)
    progress(f"wrote {paths['md']}")
    return {**paths, **parts}


# ---------------------------------------------------------------------- output
def _group_markdown(groups):
    if not groups:
        return "No per-user test values in this run folder (a run without a full-ranking test)."
    rows = [[g["grouping"], g["group"], f"{g['low']:.3g}–{g['high']:.3g}", g["n_users"],
             *[fmt(g.get(m)) for m in GROUP_METRICS]] for g in groups]
    return table(["grouping", "group", "range", "users", *GROUP_METRICS], rows)


def _probe_markdown(probes):
    if not probes:
        return "Not computable: the model has no modality features."
    targets = list(dict.fromkeys(p["target"] for p in probes))
    keyed = {(p["modality"], p["features"], p["target"]): p for p in probes}
    rows = []
    for m, f in dict.fromkeys((p["modality"], p["features"]) for p in probes):
        cells = []
        for t in targets:
            p = keyed.get((m, f, t))
            cells.append("" if p is None else f"{fmt(p['r2'], '.3f')} ± {fmt(p['r2_std'], '.3f')}")
        rows.append([m, f, *cells])
    return table(["modality", "features", *[f"R² → {t}" for t in targets]], rows)


def _epoch_summary(epochs):
    if not epochs:
        return ("No per-epoch values: the run was trained with `diagnostics: False` (the default); "
                "train with `--diagnostics=True` to record them.")
    keys = [k for k in epochs[0] if k not in ("epoch",)]
    picks = [("first", epochs[0]), ("middle", epochs[len(epochs) // 2]), ("last", epochs[-1])]
    rows = [[k, *[fmt(e.get(k), ".4g") for _, e in picks]] for k in keys]
    head = ["value", *[f"{name} (epoch {e['epoch']})" for name, e in picks]]
    return table(head, rows)


def _write(out_dir, run_id, meta, parts, planted):
    paths = {
        "md": os.path.join(out_dir, "diagnose.md"),
        "png": os.path.join(out_dir, "diagnose.png"),
        "groups_csv": os.path.join(out_dir, "groups.csv"),
        "probes_csv": os.path.join(out_dir, "probes.csv"),
        "users_csv": os.path.join(out_dir, "users.csv"),
        "epochs_csv": os.path.join(out_dir, "epochs.csv"),
    }
    write_csv(paths["groups_csv"], parts["groups"])
    write_csv(paths["probes_csv"], parts["probes"])
    write_csv(paths["users_csv"], parts.get("awareness_rows") or [])
    write_csv(paths["epochs_csv"], parts["epochs"])
    test = (meta.get("result") or {}).get("test_result") or {}
    lines = [
        f"# Diagnostics: {meta.get('model')} on {meta.get('dataset')}",
        "",
        f"Run `{run_id}` (seed {meta.get('config', {}).get('seed')}); test "
        + ", ".join(f"{m} {fmt(test.get(m))}" for m in GROUP_METRICS) + ". Definitions: docs/diagnostics.md.",
        "",
        "## Who gains: test metrics per user group",
        "",
        "Quintiles of the test users by training interactions (`activity`) and by the mean training "
        "popularity of their test items (`popularity`); equal values share a group.",
        "",
        _group_markdown(parts["groups"]),
        "",
        "## The filter",
        "",
    ]
    recon = parts["recon"]
    if recon:
        lines += ["At the best checkpoint, evaluation timestep and noise: " + ", ".join(
            f"{k} {fmt(v, '.4g')}" for k, v in recon.items()) + ".", ""]
    lines += [
        "Linear probes: out-of-sample R² (mean ± std over 5 random halves of the items) of a ridge "
        "regression from each feature set onto each target"
        + ("; `relevant`: the planted block the modality shows, `nuisance`: the planted factors that "
           "never affect preference, `random`: a control block unrelated to anything." if planted
           else "; the dataset is not planted, so only the interaction embedding is a target."),
        "",
        _probe_markdown(parts["probes"]),
        "",
        "## User-awareness",
        "",
    ]
    if parts["awareness"]:
        lines += ["Spearman correlation of each user's learned visual weighting with the planted w_u: "
                  + ", ".join(f"{k} {fmt(v, '.3f')}" for k, v in parts["awareness"].items()) + ".", ""]
    else:
        lines += ["Not computable: needs planted data and a model with per-user image and text view weights.", ""]
    lines += ["## Modality balance and the TC bound", ""]
    if parts["balance"]:
        lines += ["At the best checkpoint: " + ", ".join(f"{k} {fmt(v, '.4f')}" for k, v in parts["balance"].items())
                  + ".", ""]
    lines += ["Per epoch:", "", _epoch_summary(parts["epochs"]), ""]
    markdown = "\n".join(lines)
    write_text(paths["md"], markdown)
    _plot(paths["png"], meta, parts)
    paths["markdown"] = markdown
    return paths


def _plot(path, meta, parts):
    fig, axes = new_figure(2, 2, width=6.5, height=4.2)
    ax = axes[0, 0]
    if parts["groups"]:
        for grouping in GROUPINGS:
            rows = [g for g in parts["groups"] if g["grouping"] == grouping]
            ax.plot([g["group"] for g in rows], [g["recall@20"] for g in rows], marker="o", label=grouping)
        ax.set_title("recall@20 per user group (disparity)")
        ax.set_xlabel("quintile (Q1 lowest)")
        ax.legend(fontsize="small")
    else:
        empty_panel(ax, "groups", "no per-user test values")
    ax = axes[0, 1]
    probes = parts["probes"]
    if probes:
        labels = list(dict.fromkeys(f"{p['modality']}\n{p['features']}" for p in probes))
        targets = list(dict.fromkeys(p["target"] for p in probes))
        width = 0.8 / len(targets)
        for j, target in enumerate(targets):
            values = {f"{p['modality']}\n{p['features']}": p["r2"] for p in probes if p["target"] == target}
            ax.bar(np.arange(len(labels)) - 0.4 + width * (j + 0.5), [values.get(lab, np.nan) for lab in labels],
                   width, label=target)
        ax.set_xticks(np.arange(len(labels)), labels, fontsize="x-small")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_ylim(bottom=max(-0.5, min([0.0] + [p["r2"] for p in probes]) - 0.05))
        ax.set_title("ridge probe R² (held-out items)")
        ax.legend(fontsize="x-small")
    else:
        empty_panel(ax, "probes", "no modality features")
    epochs = parts["epochs"]
    first = epochs[0] if epochs else {}
    _epoch_lines(axes[1, 0], epochs, [k for k in first if k == "balance" or k.startswith("share/")],
                 "modality balance and view shares per epoch",
                 ("balance per epoch", "not recorded (train with diagnostics: True)"))
    _epoch_lines(axes[1, 1], epochs, [k for k in first if k.startswith("recon/") or k == "tc_bound"],
                 "filter reconstruction error and TC bound (nats) per epoch",
                 ("filter and TC bound per epoch", "not recorded (GTC with diagnostics: True)"))
    fig.suptitle(f"{meta.get('model')} on {meta.get('dataset')}")
    save_png(fig, path)


def _epoch_lines(ax, epochs, keys, title, empty):
    """One line per key of the per-epoch records over the epochs; ``empty`` (title, reason) without any."""
    if not keys:
        empty_panel(ax, *empty)
        return
    x = [e["epoch"] for e in epochs]
    for key in keys:
        ax.plot(x, [e[key] for e in epochs], label=key)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.legend(fontsize="x-small")
