"""Make RecBole 1.2.1 run on today's dependency releases.

RecBole 1.2.1 predates numpy 2, pandas 3, scipy 1.13, setuptools 81 and torch 2.6.
Most breakages are fixed by the version bounds in ``setup.cfg``; this module holds
the one that a bound cannot fix, plus a clear error when a bound was bypassed:

* :func:`quiet_library_warnings` hides, for one command, the warnings RecBole 1.2.1's own
  code raises on today's pandas and torch, which a user cannot act on.
* ``torch.load`` defaults to ``weights_only=True`` since torch 2.6. RecBole's
  checkpoints pickle its ``Config`` object (and its trainer reloads them after
  training and on ``--resume``), so every ``torch.load`` made *from RecBole's own
  modules* without an explicit ``weights_only`` gets ``weights_only=False`` back.
  Calls from any other module (ours included) keep torch's safe default.

:func:`apply` runs once on ``import recbole_gtc``; it is idempotent.
"""

import contextlib
import functools
import sys
import warnings

import numpy as np
import torch

#: (package, module attribute that must exist, the bound in setup.cfg, why)
_REQUIRED = (
    ("numpy", lambda: hasattr(np, "float_"), "numpy<2", "RecBole uses np.float_/np.bool8"),
)


def _is_recbole_module(name):
    return name == "recbole" or name.startswith("recbole.")


def _patch_torch_load():
    original = torch.load
    if getattr(original, "_recbole_gtc_shim", False):
        return

    @functools.wraps(original)
    def load(*args, **kwargs):
        if "weights_only" not in kwargs:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if _is_recbole_module(caller):
                # RecBole's own checkpoints: trusted files that pickle a Config.
                kwargs["weights_only"] = False
        return original(*args, **kwargs)

    load._recbole_gtc_shim = True
    load._original = original
    torch.load = load


def check_versions():
    """Raise ImportError with a one-line fix if a dependency bound was bypassed."""
    for package, ok, bound, why in _REQUIRED:
        if not ok():
            raise ImportError(
                f"recbole-gtc needs {bound} ({why}); reinstall with: pip install '{bound}'"
            )


def apply():
    check_versions()
    _patch_torch_load()


@contextlib.contextmanager
def quiet_library_warnings():
    """Hide the library warnings a user cannot act on, for the duration of a command only.

    * pandas' chained-assignment FutureWarning and torch's GradScaler deprecation, both
      raised from RecBole 1.2.1's own code;
    * torch's "Sparse invariant checks are implicitly disabled" notice, and its deprecation of
      ``torch.sparse.FloatTensor``, which RecBole 1.2.1's LightGCN and NGCF call.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*chained assignment.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\..*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Sparse invariant checks are implicitly disabled.*")
        # RecBole 1.2.1's LightGCN and NGCF build their graphs with torch.sparse.FloatTensor
        warnings.filterwarnings("ignore", message=r"torch\.sparse\.SparseTensor\(.*is deprecated.*")
        yield
