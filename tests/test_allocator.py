"""Importing recbole_gtc keeps large freed blocks in the process (glibc), so a step's temporaries
are not page-faulted in again at the next step; opting out and the user's own settings are kept,
and the numbers a model trains to do not change."""

import json
import os
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"),
    reason="glibc only",
)

# Page faults of writing a fresh 40 MiB tensor, once the heap has settled (the last 5 of 30 in
# a row: glibc's aligned allocations climb the heap for the first few, while small objects
# allocated in between pin its top). 40 MiB is above glibc's largest run-time mmap threshold
# (32 MiB), so with its defaults every one is a new mapping, faulted in page by page.
PROBE = r"""
import json, resource, recbole_gtc, torch
from recbole_gtc.allocator import describe
faults = []
for _ in range(30):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(10 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    del x
print(json.dumps({"faults": max(faults[-5:]), "malloc": describe()}))
"""


def _probe(**env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "RECBOLE_GTC_MALLOC")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env=dict(clean, **env), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_a_freed_block_is_reused_without_page_faults():
    tuned, default = _probe(), _probe(RECBOLE_GTC_MALLOC="default")
    assert tuned["malloc"].startswith("malloc: glibc with mmap and trim thresholds of 1024 MiB")
    assert default["malloc"] == "malloc: glibc's defaults (RECBOLE_GTC_MALLOC=default)"
    # 40 MiB is 10,240 pages of 4 KiB (20 with transparent huge pages); reused heap needs none.
    assert default["faults"] >= 20
    assert tuned["faults"] * 10 < default["faults"], (tuned, default)


@glibc
def test_the_users_own_malloc_settings_are_kept():
    kept = _probe(MALLOC_MMAP_THRESHOLD_=str(128 * 1024))
    assert kept["malloc"] == "malloc: as the user set it (MALLOC_MMAP_THRESHOLD_)"
    assert kept["faults"] >= 20  # the user's small threshold is in force: the block is mapped afresh
    assert _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")["malloc"] == "malloc: as the user set it (GLIBC_TUNABLES)"


TRAIN = r"""
import hashlib, json, sys, warnings
warnings.filterwarnings("ignore")
import recbole_gtc, torch
from recbole_gtc.benchmark import build_variant
torch.set_num_threads(1)
v = build_variant("GTC", sys.argv[1], {"data_path": sys.argv[2], "embedding_size": 16}, sys.argv[3])
tr, losses = v["trainer"], []
tr.model.train()
for batch in v["train"]:
    tr.optimizer.zero_grad(); loss = tr.model.calculate_loss(batch); loss.backward(); tr.optimizer.step()
    losses.append(loss.item())
digest = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in tr.model.parameters())).hexdigest()
print(json.dumps({"losses": losses, "weights": digest}))
"""


@glibc
def test_training_gives_the_same_numbers_either_way(tiny, tmp_path):
    runs = []
    for setting in ("tuned", "default"):
        env = dict(os.environ, RECBOLE_GTC_MALLOC=setting, OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", TRAIN, "tiny", tiny, str(tmp_path / setting)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(runs[0]["losses"]) >= 1
    assert runs[0] == runs[1]
