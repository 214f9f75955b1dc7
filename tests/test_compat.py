"""The RecBole compatibility layer (recbole_gtc/utils/compat.py)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import recbole_gtc  # noqa: F401  (applies the shims)
from recbole_gtc.utils import compat


class Opaque:
    """A pickled object torch's weights-only loader refuses, like RecBole's Config in a checkpoint."""

    def __init__(self, value):
        self.value = value


def _load_from_module(module_name, path):
    """Call torch.load(path) from code whose module name is ``module_name``."""
    scope = {"__name__": module_name, "torch": torch, "path": path}
    exec("result = torch.load(path)", scope)
    return scope["result"]


def test_torch_load_restores_full_unpickling_for_recbole_modules(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"config": Opaque(3), "state_dict": {"w": torch.ones(2)}}, path)
    loaded = _load_from_module("recbole.trainer.trainer", path)
    assert loaded["config"].value == 3
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_torch_load_keeps_safe_default_elsewhere(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"config": Opaque(3)}, path)
    for module in ("recbole_gtc.model.general_recommender.gtc", "recbolex", "__main__"):
        with pytest.raises(Exception, match="[Ww]eights"):
            _load_from_module(module, path)


def test_explicit_weights_only_is_respected(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"config": Opaque(3)}, path)
    scope = {"__name__": "recbole.quick_start", "torch": torch, "path": path}
    with pytest.raises(Exception, match="[Ww]eights"):
        exec("torch.load(path, weights_only=True)", scope)


def test_apply_is_idempotent():
    first = torch.load
    compat.apply()
    compat.apply()
    assert torch.load is first
    assert not getattr(first._original, "_recbole_gtc_shim", False)


def test_version_check_names_the_bound(monkeypatch):
    monkeypatch.delattr(np, "float_")
    with pytest.raises(ImportError, match="numpy<2"):
        compat.check_versions()


def test_recbole_imports_and_builds_lightgcn_adjacency():
    """The pins make RecBole's import chain and LightGCN's scipy use work (fresh interpreter)."""
    code = (
        "import recbole_gtc, recbole.quick_start, scipy.sparse as sp, numpy as np\n"
        "m = sp.dok_matrix((3, 3), dtype=np.float32); m._update({(0, 1): 1.0}); assert m[0, 1] == 1.0\n"
        "from recbole.config import Config\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
