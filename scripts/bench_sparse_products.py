"""GTC training steps with an earlier way of computing the graph products against the current
one, in one process, alternating, with LightGCN steps in between; process CPU seconds, one thread.

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
import sys, time, tempfile, statistics, warnings, torch, torch.nn.functional as F
warnings.filterwarnings("ignore")
import recbole_gtc
from recbole_gtc.benchmark import build_variant
import recbole_gtc.model.gtc as G
import recbole_gtc.model.sparse as S
torch.set_num_threads(1)
name = sys.argv[1]  # a recbole_gtc.benchmark variant: "GTC", "GTC sampled", ...
earlier = sys.argv[3] if len(sys.argv) > 3 else "coo"
v = build_variant(name, "baby-synth", {}, tempfile.mkdtemp())
l = build_variant("LightGCN", "baby-synth", {}, tempfile.mkdtemp())
m = v["trainer"].model
coo_adj = m.norm_adj.to_sparse_coo().coalesce(); coo_item = m.item_graph.to_sparse_coo().coalesce()
new = (G.propagate, G.sparse_mm, m.user_graph_product, S.csr_product)
def old_mode(on):
    G.propagate, G.sparse_mm, m.user_graph_product, S.csr_product = new
    if on and earlier == "coo":
        G.propagate = lambda adj, x, n_layers=2, adj_t=None: new[0](coo_adj, x, n_layers)
        G.sparse_mm = lambda a, x, at: torch.sparse.mm(coo_item, x)
        m.user_graph_product = lambda h, i, w: F.embedding_bag(i, h, per_sample_weights=w, mode="sum")
    elif on:
        S.csr_product = lambda matrix, x: matrix @ x
def batches(var, n):
    it = iter(var["train"]); return [next(it) for _ in range(n)]
bg, bl = batches(v, 4), batches(l, 4)
def run(var, bs):
    tr = var["trainer"]; tr.model.train(); t = time.process_time()
    for b in bs:
        tr.optimizer.zero_grad(); tr.model.calculate_loss(b).backward(); tr.optimizer.step()
    return (time.process_time() - t) / len(bs)
for mode in (True, False): old_mode(mode); run(v, bg[:1])
run(l, bl[:1])
T = {"old": [], "new": [], "LightGCN": []}
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
    old_mode(True); T["old"].append(run(v, bg))
    old_mode(False); T["new"].append(run(v, bg))
    T["LightGCN"].append(run(l, bl))
    print(r, {k: round(x[-1], 3) for k, x in T.items()}, flush=True)
med = {k: statistics.median(x) for k, x in T.items()}
print(name, f"old = {earlier}", "median s/step", {k: round(x, 3) for k, x in med.items()},
      "x LightGCN: old %.2f new %.2f; new/old %.3f" % (med["old"] / med["LightGCN"], med["new"] / med["LightGCN"], med["new"] / med["old"]))
