"""Which CPU kernels torch uses, chosen before torch is imported.

The same seed gives bitwise identical numbers on one machine, but not across x86 CPUs:
ATen dispatches its vectorised kernels by CPU capability (AVX2 or AVX-512: 8 or 16 lanes,
so reductions add in another order), and MKL and oneDNN pick their matrix-product code
paths by CPU. Measured on one AVX-512 machine, GTC's training loss after two epochs on
synth-mm differed in the seventh significant digit between the native kernels and each of
ATEN_CPU_CAPABILITY=avx2 and MKL_CBWR=AVX2 (and the weights differed in every pairing).

So, on x86-64, importing :mod:`recbole_gtc` before torch pins all three to AVX2, which every
x86 CPU of the last decade supports: MKL's conditional numerical reproducibility
(``MKL_CBWR=AVX2``), ATen's dispatch (``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's instruction
set (``ONEDNN_MAX_CPU_ISA=AVX2``). A variable the user set is kept.
``RECBOLE_GTC_CPU_KERNELS=native`` leaves the CPU's own choice (faster on AVX-512 machines,
and needed for fast bfloat16), at the price of results that can differ in float rounding
between CPUs. The pin narrows those differences but does not remove them all: pinned, on
an Intel Xeon and an AMD EPYC machine, BPR on ml-100k-mm gave identical metrics, while GTC's
quick start gave test Recall@20 0.4023 and 0.4008 (some path not covered by the three
switches; not found). Nothing here imports torch.
"""

import os
import platform
import sys

SWITCH = "RECBOLE_GTC_CPU_KERNELS"
PINNED = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_before_torch():
    """Set :data:`PINNED` (where unset) unless opted out, torch is already loaded or the
    machine is not x86-64. Returns True when the pins were applied."""
    if os.environ.get(SWITCH, "avx2").strip().lower() == "native":
        return False
    if "torch" in sys.modules or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    for key, value in PINNED.items():
        os.environ.setdefault(key, value)
    return True


def describe():
    """One line for the run log: which kernels this process uses and what that implies."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    mkl = os.environ.get("MKL_CBWR", "")
    if capability == "AVX2" and mkl.upper().startswith("AVX2"):
        return "CPU kernels: pinned to AVX2 (ATen, MKL, oneDNN), so AVX2 and AVX-512 machines run the same kernels"
    return (f"CPU kernels: native ({capability}, MKL_CBWR={mkl or 'unset'}): numbers can differ in float rounding "
            f"from other CPUs (import recbole_gtc before torch, without {SWITCH}=native, to pin them)")
