"""glibc malloc settings that keep a training step from page-faulting its own temporaries.

torch's CPU tensors come from ``malloc``. With glibc's defaults a block above the mmap
threshold (adjusted at run time, at most 32 MiB) is a fresh ``mmap``, and freed memory at
the top of the heap beyond the trim threshold goes back to the system. A training step
allocates and frees the same large temporaries at every step (GTC on the baby preset: the
``(U+I) x 3d`` propagation products of 20 MiB, the TC loss's blocks, the denoisers'
activations), so each step touches them as new pages: the kernel faults and zeroes every
4 KiB page again. Measured there, one thread: 105k-165k minor page faults per GTC step with
the defaults, none with the settings below, and an unchanged peak resident size (README,
"Performance").

So importing :mod:`recbole_gtc` sets both ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to
:data:`THRESHOLD` (1 GiB): blocks up to that size come from the heap, and freed memory stays
with the process for the next step. The cost is up to that much freed memory held rather
than returned. Results do not change: where a block comes from changes no arithmetic
(torch aligns every block to 64 bytes either way).

``RECBOLE_GTC_MALLOC=default`` keeps glibc's behaviour. Settings the user made
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, a ``glibc.malloc`` tunable in
``GLIBC_TUNABLES``) are kept and nothing is set; so is any C library other than glibc.
"""

import ctypes
import os

SWITCH = "RECBOLE_GTC_MALLOC"
THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h

_state = "glibc's defaults (recbole_gtc not imported)"


def _glibc():
    """The process's glibc (a ctypes handle), or None for any other C library."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        return ctypes.CDLL(None)
    except (AttributeError, ValueError, OSError):
        return None


def tune():
    """Apply the thresholds unless opted out, set by the user or not glibc.

    Returns:
        bool: True when both thresholds were set.
    """
    global _state
    if os.environ.get(SWITCH, "").strip().lower() == "default":
        _state = f"glibc's defaults ({SWITCH}=default)"
        return False
    user = [k for k in USER_SETTINGS if k in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        _state = f"as the user set it ({', '.join(user)})"
        return False
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        _state = "the C library's own (not glibc)"
        return False
    if libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD) != 1:
        _state = "glibc's defaults (mallopt refused the thresholds)"
        return False
    _state = f"glibc with mmap and trim thresholds of {THRESHOLD >> 20} MiB (recbole_gtc.allocator; {SWITCH}=default keeps glibc's)"
    return True


def describe():
    """One line for the run log: which malloc settings this process runs with."""
    return f"malloc: {_state}"
