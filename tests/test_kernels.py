"""CPU kernels: torch's own by default (importing recbole_gtc changes no process-wide setting),
pinned to AVX2 on request (``RECBOLE_GTC_CPU_KERNELS=avx2`` before recbole_gtc is imported,
x86-64), and an unknown value of the switch is one clear error before a run starts."""

import os
import platform
import subprocess
import sys

import pytest

from recbole_gtc.quick_start.quick_start import load_config
from recbole_gtc.utils.errors import RecboleGTCError

PROBE = ("import recbole_gtc, os, torch; "
         "print(torch.backends.cpu.get_cpu_capability(), os.environ.get('MKL_CBWR'), os.environ.get('ONEDNN_MAX_CPU_ISA'))")
x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")


def _probe(code, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "RECBOLE_GTC_CPU_KERNELS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(clean, **env), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_import_changes_no_kernel_setting():
    unpinned = _probe("import os, torch; print(torch.backends.cpu.get_cpu_capability())")
    capability, mkl, onednn = _probe(PROBE)
    assert [capability] == unpinned and (mkl, onednn) == ("None", "None")
    assert _probe(PROBE, RECBOLE_GTC_CPU_KERNELS="native")[1:] == ["None", "None"]


@x86
def test_avx2_on_request_keeps_the_users_own_settings():
    assert _probe(PROBE, RECBOLE_GTC_CPU_KERNELS="avx2") == ["AVX2", "AVX2", "AVX2"]
    assert _probe(PROBE, RECBOLE_GTC_CPU_KERNELS="AVX2", MKL_CBWR="COMPATIBLE")[1:] == ["COMPATIBLE", "AVX2"]


@x86
def test_avx2_after_torch_is_left_alone_and_said():
    code = ("import torch, recbole_gtc, os; from recbole_gtc.utils.kernels import describe; "
            "print(os.environ.get('MKL_CBWR')); print(describe())")
    out = _probe(code, RECBOLE_GTC_CPU_KERNELS="avx2")
    assert out[0] == "None"
    assert "native" in out and "effect:" in out


def test_an_unknown_switch_value_is_refused_before_the_run(monkeypatch):
    monkeypatch.setenv("RECBOLE_GTC_CPU_KERNELS", "avx512")
    with pytest.raises(RecboleGTCError, match=r"^RECBOLE_GTC_CPU_KERNELS='avx512': must be 'native' or 'avx2'$"):
        load_config("BPR", "synth-mm")
