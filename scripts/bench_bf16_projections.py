"""GTC training steps under bf16 autocast with the feature projections in bf16 (before) against
float32 (now, recbole_gtc/model/gtc.py: content_views), in one process, alternating, with
LightGCN steps in between (``recbole_gtc.benchmark.code_ab``): process CPU seconds per step,
one thread. Native kernels: bf16 has no hardware support under the default AVX2 pin.

    python -m recbole_gtc.prepare synthetic --dataset baby-synth --preset baby
    RECBOLE_GTC_CPU_KERNELS=native OMP_NUM_THREADS=1 python scripts/bench_bf16_projections.py "GTC bf16" 5
"""
import sys
import warnings

import recbole_gtc  # noqa: F401  (before torch: kernels and malloc settings)
import torch

import recbole_gtc.model.gtc as G
from recbole_gtc.benchmark import code_ab

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
name = sys.argv[1] if len(sys.argv) > 1 else "GTC bf16"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
current = G.GTC.content_views


def bf16_projections(self):
    return {m: self.projections[m](getattr(self, f"feat_{m}")) for m in self.modalities}


def before():
    G.GTC.content_views = bf16_projections


def now():
    G.GTC.content_views = current


med = code_ab(name, {"projections bf16": before, "projections fp32": now}, rounds=rounds)
b, n, ref = med["projections bf16"], med["projections fp32"], med["LightGCN"]
print(f"{name}: median s/step projections bf16 {b:.3f}, fp32 {n:.3f}, LightGCN {ref:.3f}; "
      f"x LightGCN: {b / ref:.2f} -> {n / ref:.2f}; fp32/bf16 {n / b:.3f}")
