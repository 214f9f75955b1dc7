"""Cost of GTC next to RecBole's LightGCN and BPR: ``python -m benchmarks.speed``.

Two timings, printed as Markdown and written as Markdown and JSON (``--out``: speed.md, speed.json):

* **Epochs** (``--dataset``): seconds per training epoch and per full evaluation (the
  validation split, full ranking) for GTC, its ablations and variants, LightGCN and BPR.
  Every variant is built once and warmed up with one epoch; then the variants are timed
  in turn, round after round (A, B, C, A, B, C, ...), so a change in machine load hits all
  of them alike. Reported: medians over the rounds and the ratio to LightGCN's median.
  On CUDA the clock is wall time read after ``torch.cuda.synchronize()``: kernels run
  asynchronously, and the process's CPU time does not count the GPU's work.
* **TC loss** (``--tc-items``): the Symile loss forward and backward on CPU, in units of one
  float32 matmul timed in the same process.

Timings on a shared machine move by 20% or more between runs: compare ratios from one
run, never absolute seconds across runs.
"""

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
import time

import torch

from benchmarks.common import finish_report, log, median, quiet_library_warnings, start_report

#: name -> (model, config overrides). GTC's rows attribute its cost (no TC, no diffusion)
#: and show its cheaper settings (bf16, sampled TC); DRAGON is its backbone.
VARIANTS = {
    "GTC": ("GTC", {}),
    "GTC bf16": ("GTC", {"mixed_precision": "bf16"}),
    "GTC sampled": ("GTC", {"tc_scope": "sampled"}),
    "GTC sampled bf16": ("GTC", {"tc_scope": "sampled", "mixed_precision": "bf16"}),
    "GTC use_tc=False": ("GTC", {"use_tc": False}),
    "GTC use_diffusion=False": ("GTC", {"use_diffusion": False}),
    "DRAGON": ("DRAGON", {}),
    "LightGCN": ("LightGCN", {}),
    "BPR": ("BPR", {}),
}
REFERENCE = "LightGCN"


def clock(kind, device):
    """``(name, now)``: the epoch timings' clock on ``device``. ``kind`` is ``wall`` or ``process``
    (this process's CPU time: with one thread, the work done, insensitive to other jobs taking
    turns on a shared machine); on CUDA always synchronised wall time (see the module doc)."""
    if device.type == "cuda":
        def now():
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return "wall seconds, CUDA synchronised", now
    if kind == "process":
        return "process CPU seconds", time.process_time
    return "wall seconds", time.perf_counter


def build_variant(name, dataset, extra, workdir, clock_kind="wall"):
    """Dataset, model and trainer of one variant, seeded as a real run is."""
    from recbole.utils import init_seed

    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.quick_start.quick_start import load_config, use_deterministic_kernels
    from recbole_gtc.trainer.trainer import _tensorboard_under, get_trainer
    from recbole_gtc.utils.utils import get_model

    model_name, overrides = VARIANTS[name]
    folder = os.path.join(workdir, name.replace(" ", "_").replace("=", "-"))
    config_dict = {"checkpoint_dir": folder, "state": "ERROR", "show_progress": False}
    config_dict.update(extra)
    config_dict.update(overrides)
    config = load_config(model_name, dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    use_deterministic_kernels(config)  # as a run: CUBLAS_WORKSPACE_CONFIG on CUDA
    data = create_dataset(config)
    train, valid, _ = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    with _tensorboard_under(folder):  # RecBole would open ./log_tensorboard otherwise
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    clock_name, now = clock(clock_kind, config["device"])
    return {"trainer": trainer, "train": train, "valid": valid, "epoch": 0, "clock": clock_name, "now": now}


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
    trainer, now = variant["trainer"], variant["now"]
    train = variant["train"] if not max_steps else _FirstBatches(variant["train"], max_steps)
    start = now()
    trainer._train_epoch(train, variant["epoch"])
    train_s = (now() - start) * len(variant["train"]) / len(train)
    variant["epoch"] += 1
    if not evaluate:
        return train_s, float("nan")
    start = now()
    trainer.evaluate(variant["valid"], load_best_model=False)
    return train_s, now() - start


def speed(dataset, names, rounds, extra=None, max_steps=None, evaluate=True, clock_kind="wall"):
    """Median seconds per training epoch and per full evaluation, interleaved; see the module doc."""
    with tempfile.TemporaryDirectory(prefix="gtc-bench-") as workdir:
        variants = {}
        for name in names:
            start = time.perf_counter()
            variants[name] = build_variant(name, dataset, dict(extra or {}), workdir, clock_kind)
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
        train_med, eval_med = median(times[name]["train"]), median(times[name]["eval"])
        row = {"variant": name, "train_s": train_med, "eval_s": eval_med, "clock": variants[name]["clock"],
               "train_all": times[name]["train"], "eval_all": times[name]["eval"]}
        if ref:
            row["train_ratio"] = train_med / median(ref["train"])
            row["eval_ratio"] = eval_med / median(ref["eval"])
        rows.append(row)
    return rows


def speed_markdown(rows):
    lines = [f"| variant | train s/epoch (median) | x {REFERENCE} | full eval s (median) | x {REFERENCE} |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['train_s']:.3f} | {r.get('train_ratio', float('nan')):.2f} "
                     f"| {r['eval_s']:.3f} | {r.get('eval_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- TC loss
def tc_cost(n_items, rounds, dim=64, n_views=3, chunk_size=1024, seed=0):
    """Symile forward+backward over ``n_items`` in matmul-equivalents, on CPU.

    The unit is one ``(n x d) @ (d x n)`` float32 product timed in the same process,
    interleaved with the loss (float32 and under bf16 autocast). The loss needs 3 such
    products per anchor (logits, anchor gradient, candidate gradient): ``3 * n_views``.
    """
    from recbole_gtc.model.loss import symile_loss

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
    unit = median(times["matmul"])
    return {"items": n_items, "dim": dim, "views": n_views, "floor_matmuls": 3 * n_views, "matmul_s": unit,
            "rows": [{"what": k, "seconds": median(v), "matmul_equivalents": median(v) / unit}
                     for k, v in times.items()]}


def tc_markdown(result):
    lines = [f"| {result['items']} items, {result['views']} views, d = {result['dim']} | seconds (median) "
             f"| matmul-equivalents (floor {result['floor_matmuls']}) |", "|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['what']} | {r['seconds']:.3f} | {r['matmul_equivalents']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def _parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split(":")[0] + ".")
    p.add_argument("--dataset", default="synth-mm", help="dataset of the epoch timings (default synth-mm)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per variant, after one warm-up epoch")
    p.add_argument("--max-steps", type=int, default=None,
                   help="time only the first N training batches of each epoch, scaled to a whole epoch")
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="wall time, or this process's CPU time (shared machines, 1 thread); CUDA: always wall")
    p.add_argument("--skip-eval", action="store_true", help="time training only (no full evaluation)")
    p.add_argument("--config", default="{}", help="JSON overrides for every variant (e.g. data_path)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, same for all")
    p.add_argument("--tc-items", type=int, default=7050, help="catalogue of the TC loss timing (0 skips it)")
    p.add_argument("--tc-only", action="store_true", help="time the TC loss only (no epochs)")
    p.add_argument("--out", default=None, help="folder for speed.md and speed.json")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    quiet_library_warnings()
    report, md = start_report("benchmarks.speed", argv)
    if args.tc_items:
        report["tc"] = tc_cost(args.tc_items, max(args.rounds, 3))
        md += ["", "TC loss forward+backward against one float32 matmul in the same process (CPU):", "",
               tc_markdown(report["tc"])]
    if not args.tc_only:
        rows = speed(args.dataset, names, args.rounds, json.loads(args.config), args.max_steps, not args.skip_eval,
                     args.clock)
        report["speed"] = {"dataset": args.dataset, "rounds": args.rounds, "max_steps": args.max_steps, "rows": rows}
        steps = f", first {args.max_steps} batches of each epoch scaled to the epoch" if args.max_steps else ""
        clocks = ", ".join(sorted({r["clock"] for r in rows}))
        md += ["", f"Speed on {args.dataset} ({args.rounds} interleaved rounds after a warm-up epoch{steps}, "
               f"{clocks}, medians):", "", speed_markdown(rows)]
    return finish_report(report, md, args.out, "speed")


if __name__ == "__main__":
    sys.exit(main())
