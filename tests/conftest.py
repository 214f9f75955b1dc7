"""Fixtures shared by the test modules, and a guard: the suite writes nothing into the repository.

Every output of a test belongs under pytest's ``tmp_path``. The guard lists the checkout
(without ``.git``, virtual environments and Python's own ``__pycache__``) before the first test
and after the last one, and fails the session, naming the paths, if any file or folder was
added or removed. Changes to existing files are not checked, so that editing the code while the
suite runs does not trip it.
"""

import os

import pytest

from recbole_gtc.prepare.synthetic import build_synthetic
from recbole_gtc.quick_start import quick_start
from recbole_gtc.study import compare, tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(root=REPO):
    """The relative paths of every file and folder under ``root`` (folders count, so that a new
    empty one shows), leaving out ``.git``, ``__pycache__`` and virtual environments."""
    seen = set()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in (".git", "__pycache__")
                         and not os.path.isfile(os.path.join(folder, d, "pyvenv.cfg"))]
        seen.update(os.path.relpath(os.path.join(folder, name), root) for name in files + subfolders)
    return seen


def written(before, after):
    """The paths added or removed between two :func:`_tree` listings, sorted."""
    return sorted(before ^ after)


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests (GPU-only paths) skip on a machine without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (scripts/gpu_check.sh runs it on a GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session):
    session.config._repo_tree = _tree()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_repo_tree", None)
    if before is None:
        return
    changed = written(before, _tree())
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"error: the test suite wrote into the repository {REPO}: {shown}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The planted generator's tiny preset (150 users, 80 items), as a data_path (one per module)."""
    root = tmp_path_factory.mktemp("tiny")
    build_synthetic("tiny", preset="tiny", out_dir=str(root / "tiny"), quiet=True)
    return str(root)


@pytest.fixture
def replace_runner(monkeypatch):
    """``replace(name, value)``: replace quick_start's ``run_recbole_gtc`` or ``load_config``
    where studies call it (quick_start itself, the comparison loop and the search), for the test."""

    def replace(name, value):
        for module in (quick_start, compare, tune):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)

    return replace
