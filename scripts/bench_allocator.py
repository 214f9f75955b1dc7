"""Training steps under glibc's default malloc settings against recbole_gtc's (recbole_gtc/allocator.py).

glibc's run-time mmap threshold cannot be restored once a process changes it, so the two
settings cannot alternate inside one process. Instead each round starts one child process
per setting (order alternating from round to round); a child builds the variants, warms each
up with one step, then times ``STEPS`` training steps of each, alternating the variants, in
process CPU seconds per step, and counts minor page faults. Reported: medians over rounds
and the ratio tuned / default. One torch thread, so CPU time is the work done.

    python -m recbole_gtc.prepare synthetic --dataset baby-synth --preset baby
    python scripts/bench_allocator.py "GTC,GTC sampled,LightGCN" 5 4
    RECBOLE_GTC_CPU_KERNELS=native python scripts/bench_allocator.py "GTC,GTC sampled,LightGCN" 5 4
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
import recbole_gtc  # before torch, so the default AVX2 kernel pin applies (recbole_gtc.kernels)
import torch
from recbole_gtc.allocator import describe
from recbole_gtc.benchmark import build_variant, train_step  # build_variant applies RECBOLE_GTC_MALLOC, as a run does
torch.set_num_threads(1)
names, steps = sys.argv[1].split(","), int(sys.argv[2])
built = {n: build_variant(n, "baby-synth", {}, tempfile.mkdtemp()) for n in names}
batches = {}
for n, v in built.items():
    it = iter(v["train"]); batches[n] = [next(it) for _ in range(steps + 1)]
def step(n, b):
    built[n]["trainer"].model.train(); train_step(built[n]["trainer"], b)
for n in names:
    step(n, batches[n][0])
out = {n: {"s": 0.0, "faults": 0} for n in names}
for i in range(1, steps + 1):
    for n in names:
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
        step(n, batches[n][i])
        out[n]["s"] += (time.process_time() - t0) / steps
        out[n]["faults"] += (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // steps
out["_malloc"] = describe()
out["_kernels"] = torch.backends.cpu.get_cpu_capability()
out["_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(names, steps, setting):
    env = dict(os.environ, OMP_NUM_THREADS="1", RECBOLE_GTC_MALLOC=setting)
    out = subprocess.run([sys.executable, "-c", CHILD, names, str(steps)], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    names, rounds = sys.argv[1], int(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    results = {"default": [], "tuned": []}
    for r in range(rounds):
        for setting in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
            results[setting].append(child(names, steps, setting))
            row = results[setting][-1]
            print(r, setting, {n: (round(v["s"], 3), v["faults"]) for n, v in row.items() if not n.startswith("_")},
                  f"peak {row['_maxrss_mib']:.0f} MiB", flush=True)
    print(f"kernels: {results['tuned'][0]['_kernels']}; malloc settings: default = {results['default'][0]['_malloc']}; "
          f"tuned = {results['tuned'][0]['_malloc']}")
    print("| variant | default s/step | faults/step | tuned s/step | faults/step | tuned / default |")
    print("|---|---|---|---|---|---|")
    for n in names.split(","):
        med = {k: statistics.median(row[n]["s"] for row in rows) for k, rows in results.items()}
        faults = {k: statistics.median(row[n]["faults"] for row in rows) for k, rows in results.items()}
        print(f"| {n} | {med['default']:.3f} | {faults['default']:.0f} | {med['tuned']:.3f} | {faults['tuned']:.0f} "
              f"| {med['tuned'] / med['default']:.3f} |")
    peaks = {k: statistics.median(row["_maxrss_mib"] for row in rows) for k, rows in results.items()}
    print(f"process peak resident MiB (median): default {peaks['default']:.0f}, tuned {peaks['tuned']:.0f}")


if __name__ == "__main__":
    main()
