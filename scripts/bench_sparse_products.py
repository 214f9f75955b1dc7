"""GTC training steps with an earlier way of computing the graph products against the current
one, in one process, alternating, with LightGCN steps in between (``recbole_gtc.benchmark.code_ab``):
process CPU seconds per step, one thread.

The third argument names the earlier way:

* ``coo`` (default): torch's COO ``sparse.mm`` + weighted ``embedding_bag`` (before the CSR
  products with a prebuilt transpose of recbole_gtc/model/sparse.py);
* ``csr``: torch's own CSR product ``A @ x`` for every product (before ``csr_product``'s
  ``embedding_bag`` kernel).

    python -m recbole_gtc.prepare synthetic --dataset baby-synth --preset baby
    OMP_NUM_THREADS=1 python scripts/bench_sparse_products.py "GTC sampled" 5
    OMP_NUM_THREADS=1 python scripts/bench_sparse_products.py GTC 5
    OMP_NUM_THREADS=1 python scripts/bench_sparse_products.py GTC 5 csr
"""
import sys
import warnings

import recbole_gtc  # noqa: F401  (before torch: kernels and malloc settings)
import torch
import torch.nn.functional as F

import recbole_gtc.model.gtc as G
import recbole_gtc.model.sparse as S
from recbole_gtc.benchmark import code_ab

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
name = sys.argv[1]  # a recbole_gtc.benchmark variant: "GTC", "GTC sampled", ...
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
earlier = sys.argv[3] if len(sys.argv) > 3 else "coo"
current = (G.propagate, G.sparse_mm, S.csr_product, G.NeighbourProduct.__call__)
coo = {}  # COO copies of the model's CSR graphs, made once, at the warm-up step


def as_coo(matrix):
    if id(matrix) not in coo:
        coo[id(matrix)] = matrix.to_sparse_coo().coalesce()
    return coo[id(matrix)]


def restore():
    G.propagate, G.sparse_mm, S.csr_product, G.NeighbourProduct.__call__ = current


def old():
    restore()
    if earlier == "csr":
        S.csr_product = lambda matrix, x: matrix @ x
        return
    G.propagate = lambda adj, x, n_layers=2, adj_t=None: current[0](as_coo(adj), x, n_layers)
    G.sparse_mm = lambda a, x, at: torch.sparse.mm(as_coo(a), x)
    G.NeighbourProduct.__call__ = lambda self, h, i, w: F.embedding_bag(i, h, per_sample_weights=w, mode="sum")


med = code_ab(name, {f"old ({earlier})": old, "new": restore}, rounds=rounds)
old_s, new_s, ref = med[f"old ({earlier})"], med["new"], med["LightGCN"]
print(f"{name}: median s/step old ({earlier}) {old_s:.3f}, new {new_s:.3f}, LightGCN {ref:.3f}; "
      f"x LightGCN: old {old_s / ref:.2f} new {new_s / ref:.2f}; new/old {new_s / old_s:.3f}")
