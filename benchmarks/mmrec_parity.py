"""Parity of the multi-modal baselines with MMRec's released code: ``python -m benchmarks.mmrec_parity``.

Builds planted data with the project's generator (:mod:`recbole_gtc.prepare.synthetic`), keeping
the MMRec folder of the same split, trains each model with MMRec's own code (a checkout of
github.com/enoche/MMRec, ``--mmrec``) and with this package, one seed after another, and prints
a Markdown table: test Recall@20 at the best validation epoch, mean ± sample std over seeds, the
ratio of the means, Welch's t-test and the mean best epoch. Both sides use MMRec's settings (its
``overall.yaml`` and ``configs/model/<M>.yaml``; here the package defaults, which follow them).
Where MMRec's YAML holds a grid, its side trains one point of it, this package's default
(``MMREC_SETTINGS``), so that both sides train one and the same configuration.

MMRec is run unmodified on CPU: the wrapper (``--run-mmrec``) only sets the device to CPU,
restores ``np.float`` (removed from numpy, used by MMRec's NDCG), stubs the image-pipeline
modules of its end-to-end models (they import torchvision and lmdb, not needed here) and keeps
DRAGON's ``result_embed`` a plain tensor on CPU as it is on GPU (see ``run_mmrec``). MMRec's
DRAGON imports torch_geometric (MMRec's requirements; not a dependency of this package): put it
on ``PYTHONPATH``. DRAGON's user graph file is written by ``build_data``. It records
each epoch's validation and test Recall@20 and applies MMRec's selection rule (first epoch with
the highest validation score). This package's runs go through ``run_recbole_gtc``.

``--shared`` gives both sides the same settings (e.g. ``{"stopping_step": 100}``: a longer
patience); such runs form tables of their own. Every finished run is one JSON line in
``WORK/runs.jsonl``; a rerun skips what is there.
Slow on CPU (minutes per run): run it with ``nice`` and one thread, e.g.
``OMP_NUM_THREADS=1 nice -n 5 python -m benchmarks.mmrec_parity --mmrec ~/MMRec/src --work /tmp/parity``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The planted sets (generator overrides of preset "small"); "sparse" is issue 26's regime:
#: about 7 interactions per user over 4,000 items, weak preference signal, mild popularity.
DATASETS = {
    "sparse": dict(users=4000, items=4000, min_inter=5, mean_extra=2.0, sharpness=0.5, pop_exponent=0.7, seed=26),
    "dense": dict(users=2000, items=1000, min_inter=10, mean_extra=10.0, seed=26),
    # issue 26's symptom (Recall@20 about 0.02, MMRec's best epoch 0-3): the sparse set with a
    # weaker preference signal and noisier features, so that the models barely learn.
    "sparse-flat": dict(users=4000, items=4000, min_inter=5, mean_extra=2.0, sharpness=0.2, noise=1.0,
                        pop_exponent=0.7, seed=26),
}


#: What MMRec's side trains where its ``configs/model/<M>.yaml`` holds a grid (MMRec's quick start
#: trains every combination of the keys in ``hyper_parameters``): this package's default, from
#: ``properties/model/<M>.yaml``. Keys MMRec iterates over are given to it as one-element lists.
MMREC_SETTINGS = {
    # MMRec: learning_rate and reg_weight over {1e-1, ..., 1e-5}; here learning_rate 0.0001, reg_weight 0.001
    "DRAGON": {"learning_rate": 0.0001, "reg_weight": 0.001},
    # MMRec: dropout {0.8, 0.9}, reg_weight {0, 1e-5, 1e-4, 1e-3}, learning_rate 0.001 (overall.yaml);
    # here dropout 0.8, reg_weight 0.001, learning_rate 0.001
    "FREEDOM": {"learning_rate": 0.001, "dropout": 0.8, "reg_weight": 0.001},
    # MMRec: reg_weight {2.0, 1.0, ..., 1e-5}, learning_rate 0.001 (overall.yaml); here both 0.001
    "VBPR": {"learning_rate": 0.001, "reg_weight": 0.001},
    # MMRec's YAML is one combination (its 'baby' block), the package defaults: nothing to set.
    "LGMRec": {},
}


# --------------------------------------------------------------------------- DRAGON's user graph
def user_graph_dict(users, items, n_users, top=200):
    """DRAGON's user co-interaction graph as MMRec's preprocessing script stores it.

    ``users``, ``items``: (E,) int arrays, the training interactions (duplicates count once);
    ``n_users``: U. Returns ``{u: [neighbours, counts]}`` for every u in range(U): the
    min(n_u, top) other users sharing the most training items with u (n_u: how many share any),
    with the number shared (floats), in ``torch.topk``'s order on u's dense float32 row of
    counts, as the script ranks them (so ties fall the same way). Built from a sparse R R^T
    instead of the script's dense U x U double loop over users.
    """
    import numpy as np
    import scipy.sparse as sp
    import torch

    users, items = np.asarray(users), np.asarray(items)
    r = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, int(items.max()) + 1))
    r.data[:] = 1.0  # duplicates were summed: one interaction per (user, item), the script's sets
    shared = (r @ r.T).tolil()
    shared.setdiag(0)  # the script pairs distinct users only
    shared = shared.tocsr()
    shared.eliminate_zeros()
    graph = {}
    for u in range(n_users):
        row = torch.zeros(n_users)  # float32, as the script's matrix
        lo, hi = shared.indptr[u], shared.indptr[u + 1]
        row[torch.from_numpy(shared.indices[lo:hi].astype(np.int64))] = torch.from_numpy(
            shared.data[lo:hi].astype(np.float32))
        best = torch.topk(row, min(hi - lo, top))
        graph[u] = [best.indices.numpy().tolist(), best.values.numpy().tolist()]
    return graph


def write_user_graph_dict(mmrec_folder, name):
    """Write ``user_graph_dict.npy`` into an MMRec folder from its ``<name>.inter`` (x_label 0 rows)."""
    import numpy as np
    import pandas as pd

    inter = pd.read_csv(os.path.join(mmrec_folder, f"{name}.inter"), sep="\t")
    train = inter[inter["x_label"] == 0]
    # the script counts users over the whole file; ids are 0..U-1 in an MMRec folder
    graph = user_graph_dict(train["userID"].to_numpy(), train["itemID"].to_numpy(), inter["userID"].nunique())
    np.save(os.path.join(mmrec_folder, "user_graph_dict.npy"), graph, allow_pickle=True)


# --------------------------------------------------------------------------- one MMRec run
def first_best_epoch(valid):
    """MMRec's model selection: the first epoch with the highest validation score (its early
    stopping updates on a strictly greater score; RecBole's on greater or equal)."""
    return max(range(len(valid)), key=lambda e: (valid[e], -e))


def run_mmrec(src, model, dataset, seed, data_path, extra=None):
    """Train ``model`` with MMRec's code in ``src`` (its ``src/`` folder) on CPU; return the record.

    ``MMREC_SETTINGS[model]`` and ``extra`` override MMRec's config; the run must come down to
    one combination of MMRec's ``hyper_parameters`` (else an error), whose values are recorded."""
    import numpy as np

    np.float = float  # removed from numpy >= 1.24; MMRec's NDCG still uses it
    sys.path.insert(0, src)
    stub = types.ModuleType("utils.data_utils")  # image pipeline of MMRec's end-to-end models
    for name in ("ImageResize", "ImagePad", "image_to_tensor", "load_decompress_img_from_lmdb_value"):
        setattr(stub, name, None)
    sys.modules["utils.data_utils"] = stub
    sys.modules.setdefault("lmdb", types.ModuleType("lmdb"))
    import torch
    from common import trainer as mm_trainer
    from utils import configurator, quick_start

    with open(os.path.join(src, "configs", "dataset", f"{dataset}.yaml"), "w") as f:
        f.write("USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\n"
                f"filter_out_cod_start_users: True\ninter_file_name: '{dataset}.inter'\n"
                "vision_feature_file: 'image_feat.npy'\ntext_feature_file: 'text_feat.npy'\n"
                "user_graph_dict_file: 'user_graph_dict.npy'\nfield_separator: \"\\t\"\n")
    curve = []
    valid_epoch = mm_trainer.Trainer._valid_epoch

    def recording_valid_epoch(self, data):  # called for valid, then test, every epoch
        score, result = valid_epoch(self, data)
        curve.append(result["recall@20"])
        return score, result

    mm_trainer.Trainer._valid_epoch = recording_valid_epoch
    init_device = configurator.Config._init_device

    def cpu(self):
        init_device(self)
        self.final_config_dict["device"] = torch.device("cpu")

    configurator.Config._init_device = cpu
    settings = dict(MMREC_SETTINGS.get(model, {}), **(extra or {}))
    used = {}

    class OneCombination(configurator.Config):
        """MMRec's config with ``settings`` applied; quick_start iterates every key listed in
        ``hyper_parameters`` (a list each), so those get one-element lists, the others scalars."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for key, value in settings.items():
                self[key] = [value] if key in self["hyper_parameters"] else value
            grid = {key: self[key] for key in self["hyper_parameters"]}
            if any(not isinstance(v, list) or len(v) != 1 for v in grid.values()):
                raise SystemExit(f"error: MMRec would train more than one combination: {grid}")
            used.update(grid, **{key: self[key] for key in settings})

    quick_start.Config = OneCombination
    if model == "DRAGON":
        # MMRec's DRAGON stores result_embed = nn.Parameter(...).to(device): on GPU .to() returns a
        # plain tensor, on CPU the Parameter itself, registered, and forward's assignment of a
        # tensor to it raises a TypeError. Make it the plain tensor it is on GPU (it is overwritten
        # by every forward pass before use; the random draws that made it are unchanged).
        from models import dragon

        dragon_init = dragon.DRAGON.__init__

        def dragon_init_as_on_gpu(self, *args, **kwargs):
            dragon_init(self, *args, **kwargs)
            self.result_embed = self._parameters.pop("result_embed").detach()

        dragon.DRAGON.__init__ = dragon_init_as_on_gpu
    os.chdir(src)  # MMRec reads ./configs
    config = {"gpu_id": 0, "use_gpu": False, "data_path": data_path.rstrip("/") + "/", "seed": [seed],
              "save_recommended_topk": False}
    quick_start.quick_start(model=model, dataset=dataset, config_dict=config, save_model=False)
    valid, test = curve[0::2], curve[1::2]
    best = first_best_epoch(valid)
    return dict(impl="mmrec", model=model, dataset=dataset, seed=seed, valid=valid, test=test, best_epoch=best,
                test_recall20=test[best], epochs=len(valid), settings=used, shared=extra or {})


# --------------------------------------------------------------------------- one run here
def run_ours(model, dataset, seed, data_path, work, extra=None, shared=None):
    """Train ``model`` with this package (best validation checkpoint, then test); return the record.

    ``extra``: this package's variant (e.g. ``eval_noise``); ``shared``: the settings both sides
    were given (``--shared``)."""
    from recbole_gtc.quick_start.quick_start import run_recbole_gtc

    # RecBole's full-sort eval batch counts users x items (4096: one user per batch at 4,000 items);
    # 2**24 ranks every user of these sets in one batch, as MMRec's 4096 users do: speed only.
    config = {"data_path": data_path, "seed": seed, "checkpoint_dir": os.path.join(work, "saved"),
              "use_gpu": False, "graph_cache_dir": None, "eval_batch_size": 2 ** 24, **(shared or {}), **(extra or {})}
    result = run_recbole_gtc(model, dataset, config_dict=config, saved=True, cmd_args=[])
    # Early stopping ends stopping_step + 1 epochs after the best one (MMRec's settings: 20, 1000
    # epochs); a run that reached its last epoch was not stopped, and its best epoch is unknown here.
    epochs, patience = result["epochs"], int(config.get("stopping_step", 20))
    best = epochs - patience - 2 if patience + 2 <= epochs < int(config.get("epochs", 1000)) else None
    return dict(impl="ours", model=model, dataset=dataset, seed=seed, extra=extra or {}, shared=shared or {},
                test_recall20=result["test_result"]["recall@20"], best_epoch=best,
                valid_recall20=result["best_valid_result"]["recall@20"], epochs=result["epochs"])


# --------------------------------------------------------------------------- driver
def build_data(name, work):
    from recbole_gtc.prepare.synthetic import build_synthetic

    ours, mmrec = os.path.join(work, "data", name), os.path.join(work, "mmrec_data", name)
    if not os.path.isdir(ours):
        build_synthetic(name, preset="small", out_dir=ours, keep_raw=mmrec, quiet=True, **DATASETS[name])
    if not os.path.exists(os.path.join(mmrec, "user_graph_dict.npy")):  # MMRec's DRAGON reads it
        write_user_graph_dict(mmrec, name)
    return os.path.dirname(ours), os.path.dirname(mmrec)


def welch(a, b):
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def table(records, models, sets, seeds, shared=None):
    """Markdown tables: per model, set and variant of this package, a summary over the seeds both
    sides finished (two at least), then every run's test Recall@20 (best epoch) per seed. Only
    the runs made with the ``shared`` settings (``--shared``; default none) are read."""
    records = [r for r in records if r.get("shared", {}) == (shared or {})]
    lines = ["| model | data | variant | seeds | MMRec | here | here / MMRec | Welch p | mean best epoch MMRec / here "
             "| mean s per run MMRec / here |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    per_seed = ["", "| model | data | run | " + " | ".join(str(s) for s in seeds) + " |",
                "|---|---|---|" + "---:|" * len(seeds)]
    for model in models:
        for name in sets:
            def pick(impl, extra=None):
                rows = {r["seed"]: r for r in records if r["impl"] == impl and r["model"] == model
                        and r["dataset"] == name and (extra is None or r.get("extra", {}) == extra)}
                return [rows[s] for s in seeds if s in rows]
            ref = pick("mmrec")
            variants = sorted({json.dumps(r.get("extra", {}), sort_keys=True) for r in records
                               if r["impl"] == "ours" and r["model"] == model and r["dataset"] == name},
                              key=lambda v: (v != "{}", v))  # the defaults first
            for variant in variants:
                here = pick("ours", json.loads(variant))
                runs = ([("MMRec", ref)] if variant == variants[0] else []) + [
                    ("here" + ("" if variant == "{}" else " " + variant), here)]
                for label, rows in runs:  # every run, paired or not
                    cells = {r["seed"]: f"{r['test_recall20']:.4f}" + (
                        "" if r.get("best_epoch") is None else f" ({r['best_epoch']})") for r in rows}
                    per_seed.append(f"| {model} | {name} | {label} | "
                                    + " | ".join(cells.get(s, "") for s in seeds) + " |")
                common = sorted({r["seed"] for r in ref} & {r["seed"] for r in here})
                a = [r["test_recall20"] for r in ref if r["seed"] in common]
                b = [r["test_recall20"] for r in here if r["seed"] in common]
                if len(a) < 2:
                    continue
                best_mm = statistics.mean(r["best_epoch"] for r in ref if r["seed"] in common)
                best_here = [r["best_epoch"] for r in here if r["seed"] in common]
                best_here = "n/a" if None in best_here else f"{statistics.mean(best_here):.1f}"

                def seconds(rows):  # wall time of a run (records written before it was kept have none)
                    walls = [r["wall_s"] for r in rows if r["seed"] in common and r.get("wall_s") is not None]
                    return f"{statistics.mean(walls):.0f}" if walls else "n/a"
                lines.append(
                    f"| {model} | {name} | {variant if variant != '{}' else 'default'} | {len(common)} "
                    f"| {statistics.mean(a):.4f} ± {statistics.stdev(a):.4f} "
                    f"| {statistics.mean(b):.4f} ± {statistics.stdev(b):.4f} | {statistics.mean(b) / statistics.mean(a):.2f} "
                    f"| {welch(a, b):.2f} | {best_mm:.1f} / {best_here} | {seconds(ref)} / {seconds(here)} |")
    return "\n".join(lines + per_seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmrec", required=True, help="MMRec's src/ folder (a checkout of enoche/MMRec)")
    parser.add_argument("--work", required=True, help="folder for the data, checkpoints and runs.jsonl")
    parser.add_argument("--models", default="LGMRec", help="comma-separated (default: %(default)s)")
    parser.add_argument("--sets", default="sparse", help=f"comma-separated of {', '.join(DATASETS)}")
    parser.add_argument("--seeds", default="999,1000,1001,1002,1003")
    parser.add_argument("--variants", default="{}",
                        help="';'-separated JSON overrides for this package's runs (default: none), "
                             "e.g. '{};{\"eval_noise\": \"fresh\"}'")
    parser.add_argument("--shared", default="{}",
                        help="JSON settings for both sides' runs, under the key names the two share, "
                             "e.g. '{\"stopping_step\": 100}' (default: none); kept apart in the tables")
    parser.add_argument("--report-only", action="store_true", help="train nothing: the table of runs.jsonl")
    parser.add_argument("--run-mmrec", nargs=5, metavar=("MODEL", "DATASET", "SEED", "DATA_PATH", "SHARED"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--run-ours", nargs=6, metavar=("MODEL", "DATASET", "SEED", "DATA_PATH", "EXTRA", "SHARED"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.run_mmrec:  # child process: one MMRec run
        model, dataset, seed, data_path, shared = args.run_mmrec
        record = run_mmrec(os.path.abspath(args.mmrec), model, dataset, int(seed), data_path, json.loads(shared))
    elif args.run_ours:
        model, dataset, seed, data_path, extra, shared = args.run_ours
        record = run_ours(model, dataset, int(seed), data_path, args.work, json.loads(extra), json.loads(shared))
    if args.run_mmrec or args.run_ours:  # wall time of the run, data loading included
        print("RESULT " + json.dumps(dict(record, wall_s=round(time.perf_counter() - start, 1))))
        return 0
    models, sets = args.models.split(","), args.sets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [json.loads(v) for v in args.variants.split(";")]
    shared = json.dumps(json.loads(args.shared), sort_keys=True)
    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, "runs.jsonl")
    records = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    done = {(r["impl"], r["model"], r["dataset"], r["seed"], json.dumps(r.get("extra", {}), sort_keys=True),
             json.dumps(r.get("shared", {}), sort_keys=True)) for r in records}
    if not args.report_only:
        for name in sets:
            ours_path, mmrec_path = build_data(name, args.work)
            for seed in seeds:  # one run at a time: seeds in the outer loop so partial tables stay paired
                for model in models:
                    jobs = [("mmrec", {})] + [("ours", v) for v in variants]
                    for impl, extra in jobs:
                        key = (impl, model, name, seed, json.dumps(extra, sort_keys=True), shared)
                        if key in done:
                            continue
                        flag = (["--run-mmrec", model, name, str(seed), mmrec_path, shared] if impl == "mmrec" else
                                ["--run-ours", model, name, str(seed), ours_path, json.dumps(extra), shared])
                        out = subprocess.run([sys.executable, "-m", "benchmarks.mmrec_parity", "--mmrec", args.mmrec,
                                              "--work", args.work] + flag, cwd=ROOT, capture_output=True, text=True)
                        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                        if out.returncode or not lines:
                            print(out.stderr[-3000:], file=sys.stderr)
                            raise SystemExit(f"error: {impl} {model} {name} seed {seed} failed")
                        record = json.loads(lines[-1][len("RESULT "):])
                        records.append(record)
                        with open(path, "a") as f:
                            f.write(json.dumps(record) + "\n")
                        print(f"{impl} {model} {name} {seed} {extra} shared {shared}: "
                              f"test Recall@20 {record['test_recall20']:.4f}", file=sys.stderr, flush=True)
    print(table(records, models, sets, seeds, json.loads(shared)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
