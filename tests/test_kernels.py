"""CPU kernels are pinned to AVX2 when recbole_gtc is imported before torch (x86-64), and
left native on request: the pin is what makes a seed give the same numbers across CPUs."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = ("import recbole_gtc, os, torch; "
         "print(torch.backends.cpu.get_cpu_capability(), os.environ.get('MKL_CBWR'), os.environ.get('ONEDNN_MAX_CPU_ISA'))")
x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")


def _probe(code, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "RECBOLE_GTC_CPU_KERNELS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(clean, **env), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@x86
def test_import_before_torch_pins_avx2():
    assert _probe(PROBE) == ["AVX2", "AVX2", "AVX2"]


@x86
def test_native_opt_out_and_user_settings_are_kept():
    capability, mkl, onednn = _probe(PROBE, RECBOLE_GTC_CPU_KERNELS="native")
    assert (mkl, onednn) == ("None", "None")
    assert _probe(PROBE, MKL_CBWR="COMPATIBLE")[1] == "COMPATIBLE"


@x86
def test_torch_imported_first_is_left_alone_and_said():
    code = "import torch, recbole_gtc, os; from recbole_gtc.kernels import describe; print(os.environ.get('MKL_CBWR')); print(describe())"
    out = _probe(code)
    assert out[0] == "None"
    assert "native" in out
