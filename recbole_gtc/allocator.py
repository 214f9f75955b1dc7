"""glibc malloc settings that keep a training step from page-faulting its own temporaries.

torch's CPU tensors come from ``malloc``. With glibc's defaults a block above the mmap
threshold (adjusted at run time, at most 32 MiB) is a fresh ``mmap``, and freed memory at
the top of the heap beyond the trim threshold goes back to the system. A training step
allocates and frees the same large temporaries at every step (GTC on the baby preset: the
``(U+I) x 3d`` propagation products of 20 MiB, the TC loss's blocks, the denoisers'
activations), so each step touches them as new pages: the kernel faults and zeroes every
4 KiB page again. Measured there, one thread: 60k-120k minor page faults per GTC step with
the defaults, 11k-16k with the settings below after one warm-up step (under one per step after
three), and an unchanged peak resident size (README, "Performance").

So a run (:func:`recbole_gtc.quick_start.run_recbole_gtc`, the runner, the benchmark) calls
:func:`tune` before it loads data: it sets both ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``
to :data:`THRESHOLD` (1 GiB), so blocks up to that size come from the heap and freed memory
stays with the process for the next step. Importing :mod:`recbole_gtc` alone changes nothing.
The cost is memory the process keeps after freeing it: up to 1 GiB at the top of the heap,
plus whatever freed blocks fragmentation strands below it (glibc never returned those either,
for blocks under its own threshold). Results do not change: where a block comes from changes
no arithmetic (tests/test_allocator.py trains GTC both ways and compares the weights).

``RECBOLE_GTC_MALLOC=default`` keeps glibc's behaviour (``tuned``, or unset, tunes; any other
value is an error). Settings the user made (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, a ``glibc.malloc``
tunable in ``GLIBC_TUNABLES``) are kept and nothing is set; so is a preloaded allocator
(jemalloc, tcmalloc, mimalloc in ``LD_PRELOAD``) or a C library other than glibc.
"""

import ctypes
import os

from recbole_gtc.errors import RecboleGTCError

SWITCH = "RECBOLE_GTC_MALLOC"
THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h

_state = "glibc's defaults (not tuned: no run started in this process)"
_tuned = False


def _glibc():
    """The process's glibc (a ctypes handle), or None for any other C library."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        return ctypes.CDLL(None)
    except (AttributeError, ValueError, OSError):
        return None


def tune():
    """Apply the thresholds, once per process, unless opted out, set by the user, another
    allocator is preloaded or the C library is not glibc.

    Returns:
        bool: True when both thresholds are set (now or by an earlier call).

    Raises:
        RecboleGTCError: :data:`SWITCH` holds something other than ``tuned`` or ``default``.
    """
    global _state, _tuned
    if _tuned:
        return True
    switch = os.environ.get(SWITCH, "").strip().lower()
    if switch not in ("", "tuned", "default"):
        raise RecboleGTCError(f"{SWITCH}={os.environ[SWITCH]!r}: must be 'tuned' or 'default'")
    if switch == "default":
        _state = f"glibc's defaults ({SWITCH}=default)"
        return False
    user = [k for k in USER_SETTINGS if k in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        _state = f"as the user set it ({', '.join(user)})"
        return False
    preload = os.environ.get("LD_PRELOAD", "")
    preloaded = [name for name in PRELOADED if name in preload]
    if preloaded:
        _state = f"the preloaded {', '.join(preloaded)} (LD_PRELOAD), not tuned"
        return False
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallopt"):
        _state = "the C library's own (not glibc), not tuned"
        return False
    if libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD) != 1 or libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD) != 1:
        _state = "glibc's defaults (mallopt refused the thresholds)"
        return False
    _tuned = True
    _state = f"glibc with mmap and trim thresholds of {THRESHOLD >> 20} MiB (recbole_gtc.allocator; {SWITCH}=default keeps glibc's)"
    return True


def describe():
    """One line for the run log: which malloc settings this process runs with."""
    return f"malloc: {_state}"
