"""Memory of GTC's graphs and training step over catalogue sizes: ``python -m benchmarks.memory``.

Printed as Markdown and written as Markdown and JSON (``--out``: memory.md, memory.json):

* **Curve** (``--items``): for each catalogue size, a generated dataset with fixed users
  and interactions; in a fresh process, the peak resident memory added by building the
  graphs (item kNN, user co-interaction, user-item) and by one GTC training step
  (forward, backward, optimizer step), and the fitted growth exponent ``b`` of
  ``peak ~ items^b`` (least squares in log-log). Linear memory gives ``b`` about 1.
* **One epoch** (``--epoch-items``): a whole GTC training epoch on a generated catalogue of
  that size, in a fresh process: seconds, steps, peaks.

Peaks are Linux's ``VmHWM`` after resetting it (``/proc/self/clear_refs``) with freed
heap returned to the system first (``malloc_trim``), minus the resident size at the reset.
On CUDA the seconds are wall time after ``torch.cuda.synchronize()`` and the report adds the
GPU's peak allocation of the step.
"""

import argparse
import contextlib
import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.common import ROOT, finish_report, log, quiet_library_warnings, start_report
from tests.toydata import write_dataset  # one writer of generated datasets (pytest: the [test] extra)


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@contextlib.contextmanager
def peak_rss():
    """Peak resident MiB added inside the block: ``{"added_mib", "peak_mib", "start_mib"}``."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the OS, so reuse does not hide growth
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    start = _status_mib("VmRSS")
    result = {"start_mib": start}
    yield result
    peak = _status_mib("VmHWM")
    result.update(peak_mib=peak, added_mib=peak - start)


def fit_exponent(sizes, values):
    """Least-squares slope of ``log(values)`` on ``log(sizes)``; nan with fewer than 2 points."""
    pairs = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if s > 0 and v > 0]
    if len(pairs) < 2:
        return float("nan")
    x, y = np.array(pairs).T
    return float(np.polyfit(x, y, 1)[0])


def _seconds_since(start):
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # kernels run asynchronously: wait for them before reading the clock
    return time.perf_counter() - start


def generate(root, name, n_users, n_items, n_inter, seed=0, dims=(64, 32)):
    """A random multi-modal dataset ``root/name`` (written by the tests' writer), its folder.

    Every user has at least one training interaction; pairs are unique; 80/10/10 split.
    Item popularity is Zipf-like (exponent 0.8), as in real catalogues.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, max(n_inter - n_users, 0))])
    items = rng.choice(n_items, size=len(users), p=weights / weights.sum())
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]  # each user's first pair stays in training
    split = np.where(first, 0, rng.choice(3, size=len(pairs), p=[0.8, 0.1, 0.1]))
    splits = {part: pairs[split == code].tolist() for code, part in enumerate(("train", "valid", "test"))}
    features = {m: rng.standard_normal((n_items, dim)).astype(np.float32) for m, dim in zip(("image", "text"), dims)}
    return write_dataset(root, name, splits, features, n_items)


def memory_worker(n_items, n_users, n_inter, overrides, epoch=False):
    """One size, in this (fresh) process: peaks of graph building and of one training step
    (``epoch``: of a whole training epoch, every batch, the loader's time included)."""
    from recbole.utils import init_seed

    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency
    from recbole_gtc.model.layers.graphs import item_item_graph, user_user_graph
    from recbole_gtc.quick_start.quick_start import load_config
    from recbole_gtc.utils.utils import get_model

    gtc = get_model("GTC")
    with tempfile.TemporaryDirectory(prefix="gtc-mem-") as root:
        generate(root, "gen", n_users, n_items, n_inter)
        cache = os.path.join(root, "cache")
        config_dict = {"data_path": root, "checkpoint_dir": os.path.join(root, "saved"), "graph_cache_dir": cache,
                       "state": "ERROR", "use_gpu": torch.cuda.is_available()}
        config_dict.update(overrides)
        config = load_config("GTC", "gen", config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        data = create_dataset(config)
        train, _, _ = data_preparation(config, data)
        ds = train.dataset
        users = ds.inter_feat[ds.uid_field].numpy()
        items = ds.inter_feat[ds.iid_field].numpy()
        feats = {m: f[1:] for m, f in ds.modality_feats.items()}
        # GTC's own rule, given the two attributes it reads, so that the graph written to the
        # cache here is the one the model's constructor then reads back.
        weights = gtc.item_graph_weights(SimpleNamespace(modalities=list(feats),
                                                         mm_graph_weights=config["mm_graph_weights"]))

        start = time.perf_counter()
        with peak_rss() as graph_mem:  # what GTC's constructor builds, written to the on-disk cache
            item_item_graph(feats, config["knn_k"], weights, chunk_size=config["knn_chunk_size"],
                            cache_dir=config["graph_cache_dir"])
            user_user_graph(users, items, ds.user_num, ds.item_num, k=config["user_graph_k"],
                            cache_dir=config["graph_cache_dir"])
            normalized_bipartite_adjacency(users, items, ds.user_num, ds.item_num)
        graph_s = time.perf_counter() - start

        init_seed(config["seed"], config["reproducibility"])
        start = time.perf_counter()
        model = gtc(config, ds).to(config["device"])  # reads the cached kNN and user graphs
        model_s = _seconds_since(start)
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        batches = train if epoch else [next(iter(train))]
        model.train()
        steps = 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with peak_rss() as step_mem:
            for batch in batches:
                optimizer.zero_grad()
                model.calculate_loss(batch.to(config["device"])).backward()
                optimizer.step()
                steps += 1
            step_s = _seconds_since(start)
        gpu_peak = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
        return {"items": n_items, "users": n_users, "interactions": int(len(users)),
                "graph_mib": graph_mem["added_mib"], "graph_s": graph_s,
                "step_mib": step_mem["added_mib"], "step_s": step_s, "steps": steps, "model_s": model_s,
                "process_peak_mib": _status_mib("VmHWM"), "gpu_step_peak_mib": gpu_peak}


def _run_worker(n_items, n_users, n_inter, overrides, threads, epoch=False, timeout=None):
    """:func:`memory_worker` in a fresh interpreter (so its peaks are its own); its result row."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", str(n_items), "--users", str(n_users),
           "--interactions", str(n_inter), "--threads", str(threads), "--config", json.dumps(overrides)]
    cmd += ["--worker-epoch"] if epoch else []
    # The repository root on the path, so that this runs from any working folder.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker for {n_items} items failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def epoch_at_scale(n_items, n_users, n_inter, overrides, threads, timeout=None):
    """One whole GTC training epoch on a generated ``n_items`` catalogue: seconds, steps, peaks."""
    return _run_worker(n_items, n_users, n_inter, overrides, threads, epoch=True, timeout=timeout)


def epoch_markdown(row):
    gpu = f", GPU peak {row['gpu_step_peak_mib']:.0f} MiB" if row.get("gpu_step_peak_mib") else ""
    return (f"| items | users | train interactions | steps | epoch s | epoch peak +MiB | process peak MiB |\n"
            f"|---|---|---|---|---|---|---|\n"
            f"| {row['items']} | {row['users']} | {row['interactions']} | {row['steps']} | {row['step_s']:.0f} "
            f"| {row['step_mib']:.0f} | {row['process_peak_mib']:.0f} |{gpu}")


def memory(sizes, n_users, n_inter, overrides, threads, timeout=None):
    """Run :func:`memory_worker` for each size in a fresh interpreter; rows plus exponents."""
    rows = []
    for n in sizes:
        start = time.perf_counter()
        rows.append(_run_worker(n, n_users, n_inter, overrides, threads, timeout=timeout))
        log(f"{n} items: step +{rows[-1]['step_mib']:.0f} MiB, graphs +{rows[-1]['graph_mib']:.0f} MiB "
            f"({time.perf_counter() - start:.0f}s)")
    sizes = [r["items"] for r in rows]
    return {"rows": rows,
            "step_exponent": fit_exponent(sizes, [r["step_mib"] for r in rows]),
            "graph_exponent": fit_exponent(sizes, [r["graph_mib"] for r in rows])}


def memory_markdown(result):
    lines = ["| items | users | train interactions | step peak +MiB | step s | graphs peak +MiB | graphs s "
             "| process peak MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['items']} | {r['users']} | {r['interactions']} | {r['step_mib']:.0f} | {r['step_s']:.1f} "
                     f"| {r['graph_mib']:.0f} | {r['graph_s']:.1f} | {r['process_peak_mib']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def _parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split(":")[0] + ".")
    p.add_argument("--items", default="2000,8000,32000,128000",
                   help="catalogue sizes of the curve (0: no curve, e.g. with --epoch-items)")
    p.add_argument("--users", type=int, default=5000, help="users of the generated datasets")
    p.add_argument("--interactions", type=int, default=50000, help="interactions of the generated datasets")
    p.add_argument("--config", default="{}", help="JSON overrides of GTC's configuration (e.g. tc_scope)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--epoch-items", type=int, default=None,
                   help="also train one whole GTC epoch on a generated catalogue of this many items "
                        "(same --users, --interactions, --config): seconds and peak memory")
    p.add_argument("--out", default=None, help="folder for memory.md and memory.json")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-epoch", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_library_warnings()
    overrides = json.loads(args.config)
    if args.worker is not None:
        print(json.dumps(memory_worker(args.worker, args.users, args.interactions, overrides,
                                       epoch=args.worker_epoch)))
        return 0
    report, md = start_report("benchmarks.memory", argv)
    sizes = [int(s) for s in args.items.split(",") if s.strip() and int(s)]
    if sizes:
        mem = memory(sizes, args.users, args.interactions, overrides, args.threads)
        report["memory"] = mem
        md += ["", f"Memory of one GTC training step and of graph building ({args.users} users, "
               f"{args.interactions} generated interactions, overrides {args.config}):", "",
               memory_markdown(mem), "", f"exponent: {mem['step_exponent']:.2f}",
               f"graph exponent: {mem['graph_exponent']:.2f}"]
    if args.epoch_items:
        log(f"one epoch at {args.epoch_items} items")
        report["epoch"] = epoch_at_scale(args.epoch_items, args.users, args.interactions, overrides, args.threads)
        md += ["", f"One whole GTC training epoch (overrides {args.config}; peak resident memory added "
               "by the epoch, and the process's peak):", "", epoch_markdown(report["epoch"])]
    return finish_report(report, md, args.out, "memory")


if __name__ == "__main__":
    sys.exit(main())
