"""Where bf16 autocast loses gradient precision in GTC: one step's gradients under bf16 against
float32's (same batch, timesteps and noise), with parts of the model held in float32 ("islands").

Trains GTC in float32 for E epochs (learning rate 1e-3, native CPU kernels, one thread), then
prints, averaged over 3 training batches, the relative L2 error of the gradients per parameter
group and the loss difference. "fp32, other seed" (other timesteps and noise) gives the scale of
a step's own randomness. Since 39c03d5 the diffusion filter, and since a77b241 the feature
projections, run in float32 under autocast, so their islands change nothing;
check out the commits before them for the previous behaviour.

    python scripts/bf16_gradients.py 8 ml-100k-mm
"""
import os
import sys
import tempfile
import time

os.environ.setdefault("RECBOLE_GTC_CPU_KERNELS", "native")
import recbole_gtc, torch
from recbole.utils import init_seed
from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.quick_start import load_config
from recbole_gtc.utils import get_model, get_trainer
torch.set_num_threads(1)
E = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ds = sys.argv[2] if len(sys.argv) > 2 else "ml-100k-mm"
cfg = load_config("GTC", ds, config_dict={"learning_rate": 0.001, "epochs": E, "state": "ERROR",
                                          "show_progress": False, "checkpoint_dir": tempfile.mkdtemp(), "eval_step": 1000})
init_seed(cfg["seed"], cfg["reproducibility"])
data = create_dataset(cfg); train, valid, test = data_preparation(cfg, data)
init_seed(cfg["seed"], cfg["reproducibility"])
model = get_model("GTC")(cfg, train.dataset)
trainer = get_trainer(cfg["MODEL_TYPE"], "GTC")(cfg, model)
t0 = time.time()
if E: trainer.fit(train, valid, saved=False, verbose=False)
print(f"trained {E} epochs in {time.time()-t0:.0f}s; logit scale {model.logit_scale.exp().item():.2f}")
model.train()
batches = [b for _, b in zip(range(3), train)]
AC = lambda on: torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)
orig = {k: getattr(model, k) for k in ("content_views", "denoise", "tc_loss")}
def f32(name):
    fn = orig[name]
    if name == "content_views":
        def w():
            with AC(False): return fn()
    elif name == "denoise":
        def w(content, cond):
            with AC(False): return fn({m: c.float() for m, c in content.items()}, cond.float())
    else:
        def w(out, items):
            out = dict(out); out["denoised"] = {m: v.float() for m, v in out["denoised"].items()}
            with AC(False): return fn(out, items)
    return w
def grads(batch, amp, islands=(), seed=0):
    for k in orig: setattr(model, k, f32(k) if k in islands else orig[k])
    model.zero_grad(set_to_none=True); torch.manual_seed(seed)
    with AC(amp): loss = model.calculate_loss(batch)
    loss.backward()
    for k in orig: setattr(model, k, orig[k])
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
groups = {"proj": "projections", "den": "denoisers", "idemb": "item_id_embedding", "upref": "user_preference",
          "uvw": "user_view_weight", "scale": "logit_scale"}
def rel(g, ref):
    out = {}
    for gname, pre in groups.items():
        ks = [k for k in ref if k.startswith(pre)]
        if not ks: continue
        num = sum(((g[k] - ref[k]) ** 2).sum() for k in ks) ** 0.5
        den = sum((ref[k] ** 2).sum() for k in ks) ** 0.5
        out[gname] = (num / den).item()
    num = sum(((g[k] - ref[k]) ** 2).sum() for k in ref) ** 0.5; den = sum((ref[k] ** 2).sum() for k in ref) ** 0.5
    out["all"] = (num / den).item()
    return out
settings = [("fp32, other seed", False, (), 1), ("bf16", True, (), 0), ("bf16 proj32", True, ("content_views",), 0),
            ("bf16 den32", True, ("denoise",), 0), ("bf16 tc32", True, ("tc_loss",), 0),
            ("bf16 proj32+den32", True, ("content_views", "denoise"), 0),
            ("bf16 den32+tc32", True, ("denoise", "tc_loss"), 0), ("bf16 all32 islands", True, tuple(orig), 0)]
acc = {}
for bi, b in enumerate(batches):
    l0, ref = grads(b, False)
    for name, amp, isl, seed in settings:
        l, g = grads(b, amp, isl, seed)
        r = rel(g, ref); r["dloss"] = l - l0
        for k, v in r.items(): acc.setdefault(name, {}).setdefault(k, []).append(v)
cols = ["all"] + list(groups) + ["dloss"]
print("| setting | " + " | ".join(cols) + " |")
for name in acc:
    print(f"| {name} | " + " | ".join(f"{sum(acc[name][c])/len(acc[name][c]):.2e}" for c in cols if c in acc[name]) + " |")
