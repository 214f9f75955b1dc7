"""Which CPU kernels torch uses: the CPU's own by default, an AVX2 pin on request.

The same seed gives bitwise identical numbers on one machine, but not across x86 CPUs:
ATen dispatches its vectorised kernels by CPU capability (AVX2 or AVX-512: 8 or 16 lanes,
so reductions add in another order), and MKL and oneDNN pick their matrix-product code
paths by CPU. ``RECBOLE_GTC_CPU_KERNELS=avx2``, set before ``recbole_gtc`` (and so torch) is
imported, pins all three to AVX2, which every x86 CPU of the last decade supports: MKL's
conditional numerical reproducibility (``MKL_CBWR=AVX2``), ATen's dispatch
(``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA=AVX2``); a
variable the user set is kept. It is an opt-in, for comparing runs across CPUs: it narrows
their differences without removing them for GTC (docs/reproducibility.md), makes GTC's steps
slower and takes bfloat16 its hardware support. Unset or ``native`` (the default), nothing
is changed. Nothing here imports torch.
"""

import os
import platform
import sys

from recbole_gtc.utils.errors import RecboleGTCError

SWITCH = "RECBOLE_GTC_CPU_KERNELS"
CHOICES = ("native", "avx2")
PINNED = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def requested():
    """The switch's value, lower-cased (``native`` when unset)."""
    return os.environ.get(SWITCH, "native").strip().lower() or "native"


def pin_before_torch():
    """Set :data:`PINNED` (where unset) when the user asked for ``avx2``, torch is not loaded yet
    and the machine is x86-64. Returns True when the pins were applied. An unknown value is
    left for :func:`check` to refuse at the start of a run (an import does not raise)."""
    if requested() != "avx2":
        return False
    if "torch" in sys.modules or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    for key, value in PINNED.items():
        os.environ.setdefault(key, value)
    return True


def check():
    """The switch's value; an unknown one is a :class:`RecboleGTCError` naming it and the choices."""
    value = requested()
    if value not in CHOICES:
        raise RecboleGTCError(f"{SWITCH}={os.environ.get(SWITCH)!r}: must be 'native' or 'avx2'")
    return value


def describe():
    """One line for the run log: which kernels this process uses and what that implies."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    mkl = os.environ.get("MKL_CBWR", "")
    if capability == "AVX2" and mkl.upper().startswith("AVX2"):
        return "CPU kernels: pinned to AVX2 (ATen, MKL, oneDNN), so AVX2 and AVX-512 machines run the same kernels"
    note = ""
    if requested() == "avx2":
        note = f"; {SWITCH}=avx2 had no effect: torch was imported before recbole_gtc"
    return (f"CPU kernels: native ({capability}, MKL_CBWR={mkl or 'unset'}): numbers can differ in float rounding "
            f"from other CPUs{note}")
