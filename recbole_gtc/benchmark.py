"""Cost of GTC next to RecBole's LightGCN and BPR: ``python -m recbole_gtc.benchmark``.

Two measurements, both printed as Markdown and written as Markdown and JSON (``--out``):

* **Speed** (``--dataset``): seconds per training epoch and per full evaluation (the
  validation split, full ranking) for GTC, its ablations and variants, LightGCN and BPR.
  Every variant is built once and warmed up with one epoch; then the variants are timed
  in turn, round after round (A, B, C, A, B, C, ...), so a change in machine load hits all
  of them alike. Reported: medians over the rounds and the ratio to LightGCN's median.
* **Memory** (``--items``): for each catalogue size, a generated dataset with fixed users
  and interactions; in a fresh process, the peak resident memory added by building the
  graphs (item kNN, user co-interaction, user-item) and by one GTC training step
  (forward, backward, optimizer step), and the fitted growth exponent ``b`` of
  ``peak ~ items^b`` (least squares in log-log). Linear memory gives ``b`` about 1.

Peaks are Linux's ``VmHWM`` after resetting it (``/proc/self/clear_refs``) with freed
heap returned to the system first (``malloc_trim``), minus the resident size at the reset.

Timings on a shared machine move by 20% or more between runs: compare ratios from one
run, never absolute seconds across runs.
"""

import argparse
import contextlib
import ctypes
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from recbole_gtc import allocator

#: name -> (model, config overrides). GTC's rows attribute its cost (no TC, no diffusion)
#: and show its cheaper settings (bf16, sampled TC).
VARIANTS = {
    "GTC": ("GTC", {}),
    "GTC bf16": ("GTC", {"mixed_precision": "bf16"}),
    "GTC sampled": ("GTC", {"tc_scope": "sampled"}),
    "GTC sampled bf16": ("GTC", {"tc_scope": "sampled", "mixed_precision": "bf16"}),
    "GTC use_tc=False": ("GTC", {"use_tc": False}),
    "GTC use_diffusion=False": ("GTC", {"use_diffusion": False}),
    "LightGCN": ("LightGCN", {}),
    "BPR": ("BPR", {}),
}
REFERENCE = "LightGCN"

#: The speed table's clock: wall time (``--clock wall``, default) or this process's CPU time
#: (``--clock process``: with one thread, the work done, insensitive to other jobs taking turns
#: on a shared machine; it does not count time spent waiting, which one thread never does here).
CLOCK = time.perf_counter


# ---------------------------------------------------------------------------- helpers
def _median(values):
    return statistics.median(values) if values else float("nan")


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


def machine():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), model)
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = [f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx"))]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": model, "cores": os.cpu_count(), "flags": wanted, "gpu": gpu,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "malloc": allocator.describe()}


# ---------------------------------------------------------------------------- speed
def _quiet_trainer(trainer_class, config, model, folder):
    from recbole_gtc.trainer import _tensorboard_under

    with _tensorboard_under(folder):  # RecBole would open ./log_tensorboard otherwise
        return trainer_class(config, model)


def build_variant(name, dataset, extra, workdir):
    """Dataset, model and trainer of one variant, seeded as a real run is (malloc settings too)."""
    from recbole.utils import init_seed

    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.quick_start import load_config
    from recbole_gtc.utils import get_model, get_trainer

    allocator.tune()
    model_name, overrides = VARIANTS[name]
    folder = os.path.join(workdir, name.replace(" ", "_").replace("=", "-"))
    config_dict = {"checkpoint_dir": folder, "state": "ERROR", "show_progress": False}
    config_dict.update(extra)
    config_dict.update(overrides)
    config = load_config(model_name, dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    torch.use_deterministic_algorithms(bool(config["reproducibility"]), warn_only=True)
    data = create_dataset(config)
    train, valid, _ = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = _quiet_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), config, model, folder)
    return {"trainer": trainer, "train": train, "valid": valid, "epoch": 0}


class _FirstBatches:
    """The first ``n`` batches of a RecBole dataloader (``--max-steps``); everything else delegated."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self):
        return min(self.n, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def _time_once(variant, max_steps=None, evaluate=True):
    """One training epoch (or its first ``max_steps`` batches) and one full evaluation, in seconds.

    With ``max_steps`` the training time is scaled to a whole epoch (seconds per step times
    the epoch's batches), so the table keeps its unit; the ratios are ratios of step times.
    """
    trainer = variant["trainer"]
    train = variant["train"] if not max_steps else _FirstBatches(variant["train"], max_steps)
    start = CLOCK()
    trainer._train_epoch(train, variant["epoch"])
    train_s = (CLOCK() - start) * len(variant["train"]) / len(train)
    variant["epoch"] += 1
    if not evaluate:
        return train_s, float("nan")
    start = CLOCK()
    trainer.evaluate(variant["valid"], load_best_model=False)
    return train_s, CLOCK() - start


def speed(dataset, names, rounds, extra=None, log=print, max_steps=None, evaluate=True):
    """Median seconds per training epoch and per full evaluation, interleaved; see the module doc."""
    extra = dict(extra or {})
    with tempfile.TemporaryDirectory(prefix="gtc-bench-") as workdir:
        variants = {}
        for name in names:
            start = time.perf_counter()
            variants[name] = build_variant(name, dataset, extra, workdir)
            log(f"built {name} in {time.perf_counter() - start:.1f}s; warm-up epoch")
            _time_once(variants[name], max_steps, evaluate)  # warm-up: first-call allocations, kernel selection
        times = {name: {"train": [], "eval": []} for name in names}
        for r in range(rounds):
            for name in names:
                train_s, eval_s = _time_once(variants[name], max_steps, evaluate)
                times[name]["train"].append(train_s)
                times[name]["eval"].append(eval_s)
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n]['train'][-1]:.2f}s" for n in names))
    rows = []
    ref = times.get(REFERENCE)
    for name in names:
        train_med, eval_med = _median(times[name]["train"]), _median(times[name]["eval"])
        row = {"variant": name, "train_s": train_med, "eval_s": eval_med,
               "train_all": times[name]["train"], "eval_all": times[name]["eval"]}
        if ref:
            row["train_ratio"] = train_med / _median(ref["train"])
            row["eval_ratio"] = eval_med / _median(ref["eval"])
        rows.append(row)
    return rows


def train_step(trainer, batch):
    """One optimizer step of ``trainer``'s model on ``batch``, under the trainer's
    ``mixed_precision`` autocast as its epoch applies it; no per-epoch hook, no GradScaler
    (CPU mixed precision is bf16, which needs none). Returns the loss (a detached scalar)."""
    amp = getattr(trainer, "amp_dtype", None)
    trainer.optimizer.zero_grad()
    with torch.autocast(trainer.device.type, dtype=amp, enabled=amp is not None):
        loss = trainer.model.calculate_loss(batch)
    loss.backward()
    trainer.optimizer.step()
    return loss.detach()


def code_ab(name, modes, rounds=5, steps=4, dataset="baby-synth", log=print):
    """One variant's training steps under two or more versions of some code, in one process.

    For A/B measurements of a change that must keep results: ``modes`` maps a label to a
    function that switches the code to that version (e.g. by replacing a module attribute).
    The variant and LightGCN are built once; each round runs ``steps`` batches of the variant
    under every mode in turn (:func:`train_step`), then LightGCN's, in process CPU seconds, so
    the caller sets one torch thread.

    Returns:
        dict: label -> median seconds per step over the rounds, ``LightGCN`` included.
    """
    with tempfile.TemporaryDirectory(prefix="gtc-ab-") as workdir:
        built = {label: build_variant(label, dataset, {}, workdir) for label in (name, REFERENCE)}
        batches = {label: list(itertools.islice(iter(v["train"]), steps)) for label, v in built.items()}

        def run(label, n=steps):
            trainer = built[label]["trainer"]
            trainer.model.train()
            start = time.process_time()
            for batch in batches[label][:n]:
                train_step(trainer, batch)
            return (time.process_time() - start) / n

        for switch in modes.values():  # warm-up: first-call allocations, kernel selection
            switch()
            run(name, 1)
        run(REFERENCE, 1)
        times = {label: [] for label in [*modes, REFERENCE]}
        for r in range(rounds):
            for label, switch in modes.items():
                switch()
                times[label].append(run(name))
            times[REFERENCE].append(run(REFERENCE))
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
    return {label: _median(v) for label, v in times.items()}


def speed_markdown(rows):
    lines = [f"| variant | train s/epoch (median) | x {REFERENCE} | full eval s (median) | x {REFERENCE} |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_s']:.3f} | {r.get('train_ratio', float('nan')):.2f} "
                     f"| {r['eval_s']:.3f} | {r.get('eval_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- TC loss
def tc_cost(n_items, rounds, dim=64, n_views=3, chunk_size=1024, seed=0):
    """Symile forward+backward over ``n_items`` in matmul-equivalents.

    The unit is one ``(n x d) @ (d x n)`` float32 product timed in the same process,
    interleaved with the loss (float32 and under bf16 autocast). The loss needs 3 such
    products per anchor (logits, anchor gradient, candidate gradient): ``3 * n_views``.
    """
    from recbole_gtc.model.tc_loss import symile_loss

    g = torch.Generator().manual_seed(seed)
    raw = [torch.randn(n_items, dim, generator=g, requires_grad=True) for _ in range(n_views)]
    theta = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    a, b = torch.randn(n_items, dim, generator=g), torch.randn(n_items, dim, generator=g)

    def loss(amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            views = [torch.nn.functional.normalize(v, dim=1) for v in raw]
            value = symile_loss(views, theta.exp(), chunk_size=chunk_size, generator=torch.Generator().manual_seed(1))
        value.backward()

    runs = {"matmul": lambda: a @ b.T, "tc fp32": lambda: loss(False), "tc bf16": lambda: loss(True)}
    times = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    unit = _median(times["matmul"])
    return {"items": n_items, "dim": dim, "views": n_views, "floor_matmuls": 3 * n_views, "matmul_s": unit,
            "rows": [{"what": k, "seconds": _median(v), "matmul_equivalents": _median(v) / unit}
                     for k, v in times.items()]}


def tc_markdown(result):
    lines = [f"| {result['items']} items, {result['views']} views, d = {result['dim']} | seconds (median) "
             f"| matmul-equivalents (floor {result['floor_matmuls']}) |", "|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['what']} | {r['seconds']:.3f} | {r['matmul_equivalents']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- memory
def write_generated(root, name, n_users, n_items, n_inter, seed=0, dims=(64, 32)):
    """A random multi-modal dataset ``root/name`` (RecBole benchmark files, .npy features).

    Every user has at least one training interaction; pairs are unique; 80/10/10 split.
    Item popularity is Zipf-like (exponent 0.8), as in real catalogues.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, max(n_inter - n_users, 0))])
    items = rng.choice(n_items, size=len(users), p=weights / weights.sum())
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]  # each user's first pair stays in training
    split = np.where(first, 0, rng.choice(3, size=len(pairs), p=[0.8, 0.1, 0.1]))
    for code, part in enumerate(("train", "valid", "test")):
        with open(os.path.join(folder, f"{name}.{part}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"u{u}\t{i}\n" for u, i in pairs[split == code])
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\n")
        f.writelines(f"{i}\n" for i in range(n_items))
    modalities = {}
    for m, dim in zip(("image", "text"), dims):
        np.save(os.path.join(folder, f"{m}_feat.npy"), rng.standard_normal((n_items, dim)).astype(np.float32))
        modalities[m] = f"{m}_feat.npy"
    with open(os.path.join(folder, f"{name}.yaml"), "w") as f:
        f.write("USER_ID_FIELD: user_id\nITEM_ID_FIELD: item_id\nload_col:\n  inter: [user_id, item_id]\n"
                "  item: [item_id]\nbenchmark_filename: [train, valid, test]\nmodalities:\n"
                + "".join(f"  {m}: {p}\n" for m, p in modalities.items()) + "eval_protocol: mmrec\n")
    return folder


def memory_worker(n_items, n_users, n_inter, overrides, epoch=False):
    """One size, in this (fresh) process: peaks of graph building and of one training step
    (``epoch``: of a whole training epoch, every batch, the loader's time included)."""
    from recbole.utils import init_seed

    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.model.bipartite import normalized_bipartite_adjacency
    from recbole_gtc.model.graphs import item_item_graph, user_user_graph
    from recbole_gtc.quick_start import load_config
    from recbole_gtc.utils import get_model

    with tempfile.TemporaryDirectory(prefix="gtc-mem-") as root:
        write_generated(root, "gen", n_users, n_items, n_inter)
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
        # GTC's own rule (configured weights, 1/M for unlisted modalities, normalised), so the
        # graph written to the cache here is the one the model's constructor then reads back.
        raw = {m: float((config["mm_graph_weights"] or {}).get(m, 1.0 / len(feats))) for m in feats}
        weights = {m: w / sum(raw.values()) for m, w in raw.items()}

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
        model = get_model("GTC")(config, ds).to(config["device"])  # reads the cached kNN and user graphs
        model_s = time.perf_counter() - start
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        batches = train if epoch else [next(iter(train))]
        model.train()
        steps = 0
        start = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with peak_rss() as step_mem:
            for batch in batches:
                optimizer.zero_grad()
                model.calculate_loss(batch.to(config["device"])).backward()
                optimizer.step()
                steps += 1
        step_s = time.perf_counter() - start
        gpu_peak = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
        return {"items": n_items, "users": n_users, "interactions": int(len(users)),
                "graph_mib": graph_mem["added_mib"], "graph_s": graph_s,
                "step_mib": step_mem["added_mib"], "step_s": step_s, "steps": steps, "model_s": model_s,
                "process_peak_mib": _status_mib("VmHWM"), "gpu_step_peak_mib": gpu_peak}


def _run_worker(n_items, n_users, n_inter, overrides, threads, epoch=False, timeout=None):
    """:func:`memory_worker` in a fresh interpreter (so its peaks are its own); its result row."""
    cmd = [sys.executable, "-m", "recbole_gtc.benchmark", "--memory-worker", str(n_items), "--users", str(n_users),
           "--interactions", str(n_inter), "--threads", str(threads), "--overrides", json.dumps(overrides)]
    cmd += ["--worker-epoch"] if epoch else []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
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


def memory(sizes, n_users, n_inter, overrides, threads, log=print, timeout=None):
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
    p = argparse.ArgumentParser(prog="python -m recbole_gtc.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth-mm", help="dataset of the speed table (default synth-mm)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per variant, after one warm-up epoch")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time only the first N training batches of each epoch, scaled to a whole epoch")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="speed table clock: wall time, or this process's CPU time (shared machines, 1 thread)")
    p.add_argument("--skip-eval", action="store_true", help="time training only (no full evaluation)")
    p.add_argument("--items", default="2000,8000,32000,128000", help="catalogue sizes of the memory curve")
    p.add_argument("--users", type=int, default=5000, help="users of the generated memory datasets")
    p.add_argument("--interactions", type=int, default=50000, help="interactions of the generated memory datasets")
    p.add_argument("--memory-config", default="{}", help="JSON overrides for the memory step (e.g. tc_scope)")
    p.add_argument("--config", default="{}", help="JSON overrides for every speed variant (e.g. data_path)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, same for all")
    p.add_argument("--tc-items", type=int, default=7050, help="catalogue of the TC loss timing (0 skips it)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--out", default=None, help="folder for benchmark.md and benchmark.json")
    p.add_argument("--epoch-items", type=int, default=None,
                   help="also train one whole GTC epoch on a generated catalogue of this many items "
                        "(same --users, --interactions, --memory-config): seconds and peak memory")
    p.add_argument("--memory-worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-epoch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    allocator.tune()  # as a run does (quick_start), in this process and in each memory worker
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas/torch notices inside RecBole
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.memory_worker is not None:
        row = memory_worker(args.memory_worker, args.users, args.interactions, json.loads(args.overrides),
                            epoch=args.worker_epoch)
        print(json.dumps(row))
        return 0
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 - progress, not results
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "command": "python -m recbole_gtc.benchmark " + " ".join(argv if argv is not None else sys.argv[1:])}
    md = [f"Benchmark {report['date']}; {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"{report['machine']['threads']} torch threads, GPU: {report['machine']['gpu'] or 'none'}; "
          f"{report['machine']['malloc']}; command: `{report['command']}`"]
    if args.tc_items:
        report["tc"] = tc_cost(args.tc_items, max(args.rounds, 3))
        md += ["", "TC loss forward+backward against one float32 matmul in the same process:", "",
               tc_markdown(report["tc"])]
    if not args.skip_speed:
        names = [n.strip() for n in args.variants.split(",") if n.strip()]
        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            raise SystemExit(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}")
        report["speed"] = {"dataset": args.dataset, "rounds": args.rounds,
                           "max_steps": args.max_steps,
                           "rows": speed(args.dataset, names, args.rounds, json.loads(args.config), log,
                                         args.max_steps, not args.skip_eval)}
        steps = f", first {args.max_steps} batches of each epoch scaled to the epoch" if args.max_steps else ""
        steps += ", process CPU seconds" if args.clock == "process" else ", wall seconds"
        md += ["", f"Speed on {args.dataset} ({args.rounds} interleaved rounds after a warm-up epoch{steps}, medians):",
               "", speed_markdown(report["speed"]["rows"])]
    if not args.skip_memory:
        sizes = [int(s) for s in args.items.split(",") if s.strip()]
        mem = memory(sizes, args.users, args.interactions, json.loads(args.memory_config), args.threads, log)
        report["memory"] = mem
        md += ["", f"Memory of one GTC training step and of graph building ({args.users} users, "
               f"{args.interactions} generated interactions, overrides {args.memory_config}):", "",
               memory_markdown(mem), "", f"exponent: {mem['step_exponent']:.2f}",
               f"graph exponent: {mem['graph_exponent']:.2f}"]
    if args.epoch_items:
        log(f"one epoch at {args.epoch_items} items")
        report["epoch"] = epoch_at_scale(args.epoch_items, args.users, args.interactions,
                                         json.loads(args.memory_config), args.threads)
        md += ["", f"One whole GTC training epoch (overrides {args.memory_config}; peak resident memory added "
               "by the epoch, and the process's peak):", "", epoch_markdown(report["epoch"])]
    text = "\n".join(md)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "benchmark.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(args.out, "benchmark.json"), "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
