"""A run keeps large freed blocks in the process (glibc), so a step's temporaries are not
page-faulted in again at the next step; importing the package alone changes nothing, opting
out and the user's own settings are kept, a bad switch value is one error line, and the
numbers a model trains to do not change."""

import json
import os
import subprocess
import sys

import pytest

from recbole_gtc import allocator
from recbole_gtc.errors import RecboleGTCError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")

# Page faults of writing a fresh 40 MiB tensor, once the heap has settled (the largest of the
# last 5 of 30 in a row: glibc's aligned allocations climb the heap for the first few, while
# small objects allocated in between pin its top). 40 MiB is above glibc's largest run-time
# mmap threshold (32 MiB), so with its defaults every one is a new mapping, faulted in page by
# page: 10,240 faults of 4 KiB (20 with transparent huge pages).
PROBE = r"""
import json, resource, sys, recbole_gtc, torch
from recbole_gtc import allocator
if sys.argv[1] == "tune":
    allocator.tune()
faults = []
for _ in range(30):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(10 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    del x
print(json.dumps({"faults": max(faults[-5:]), "malloc": allocator.describe()}))
"""


def _clean_env(**env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD", allocator.SWITCH)}
    return dict(clean, **env)


def _probe(tune=True, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, "tune" if tune else "import-only"], capture_output=True,
                         text=True, env=_clean_env(**env), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_a_run_reuses_freed_blocks_without_page_faults():
    tuned = _probe()
    if not tuned["malloc"].startswith("malloc: glibc with"):
        pytest.skip(f"not tuned here: {tuned['malloc']}")  # e.g. an older glibc refusing 1 GiB
    default = _probe(**{allocator.SWITCH: "default"})
    imported = _probe(tune=False)
    assert default["malloc"] == "malloc: glibc's defaults (RECBOLE_GTC_MALLOC=default)"
    assert imported["malloc"].startswith("malloc: glibc's defaults (not tuned")
    assert default["faults"] >= 20 and imported["faults"] >= 20
    assert tuned["faults"] * 4 <= default["faults"], (tuned, default)


@glibc
def test_the_users_own_malloc_settings_are_kept():
    kept = _probe(MALLOC_MMAP_THRESHOLD_=str(128 * 1024))
    assert kept["malloc"] == "malloc: as the user set it (MALLOC_MMAP_THRESHOLD_)"
    assert kept["faults"] >= 20  # the user's small threshold is in force: the block is mapped afresh
    tunables = _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")
    assert tunables["malloc"] == "malloc: as the user set it (GLIBC_TUNABLES)"
    preloaded = _probe(LD_PRELOAD="libjemalloc.so.2-not-installed")  # the loader warns and goes on
    assert preloaded["malloc"] == "malloc: the preloaded jemalloc (LD_PRELOAD), not tuned"


def test_a_bad_switch_value_is_an_error(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", False)
    monkeypatch.setenv(allocator.SWITCH, "off")
    with pytest.raises(RecboleGTCError, match=r"^RECBOLE_GTC_MALLOC='off': must be 'tuned' or 'default'$"):
        allocator.tune()


def test_the_runner_refuses_a_bad_switch_value_before_a_run_starts(tiny, tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "run_recbole_gtc.py"), "--model=BPR", "--dataset=tiny",
                          f"--data_path={tiny}", f"--checkpoint_dir={tmp_path / 'saved'}", "--epochs=1"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=_clean_env(**{allocator.SWITCH: "off"}))
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == "error: RECBOLE_GTC_MALLOC='off': must be 'tuned' or 'default'"
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "saved").exists() or not any((tmp_path / "saved").iterdir())


# One epoch of GTC on a generated catalogue large enough for glibc's defaults to map fresh
# blocks (TC blocks of 1024 x 3000, propagation products of (U + I) x 3d), both ways.
TRAIN = r"""
import hashlib, json, resource, sys, warnings
warnings.filterwarnings("ignore")
import recbole_gtc, torch
from recbole_gtc import allocator
from recbole_gtc.benchmark import build_variant, train_step, write_generated
torch.set_num_threads(1)
write_generated(sys.argv[1], "gen", n_users=600, n_items=3000, n_inter=6000)
v = build_variant("GTC", "gen", {"data_path": sys.argv[1], "graph_cache_dir": None}, sys.argv[2])
tr, losses = v["trainer"], []
tr.model.train()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for batch in v["train"]:
    losses.append(train_step(tr, batch).item())
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
digest = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in tr.model.parameters())).hexdigest()
print(json.dumps({"losses": losses, "weights": digest, "malloc": allocator.describe(), "faults": faults}))
"""


@glibc
def test_training_gives_the_same_numbers_either_way(tmp_path):
    runs = {}
    for setting in ("tuned", "default"):
        out = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / "data"), str(tmp_path / setting)],
                             capture_output=True, text=True, timeout=600,
                             env=_clean_env(OMP_NUM_THREADS="1", **{allocator.SWITCH: setting}))
        assert out.returncode == 0, out.stderr[-2000:]
        runs[setting] = json.loads(out.stdout.strip().splitlines()[-1])
    tuned, default = runs["tuned"], runs["default"]
    if not tuned["malloc"].startswith("malloc: glibc with"):
        pytest.skip(f"not tuned here: {tuned['malloc']}")
    assert default["malloc"] == "malloc: glibc's defaults (RECBOLE_GTC_MALLOC=default)"
    assert len(tuned["losses"]) >= 2
    assert (tuned["losses"], tuned["weights"]) == (default["losses"], default["weights"])
