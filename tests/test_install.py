"""An ordinary (non-editable) install works from any folder: the wheel carries the
package defaults and the bundled datasets, and the three entry points run."""

import os
import shutil
import subprocess
import sys

import pytest

from recbole_gtc.utils.utils import REPO_ROOT


def _not_sources(folder, names):
    """What a build does not read: version control, build outputs, caches, venvs, results, and
    datasets other than the bundled ones (setup.py's SHIPPED: a missing one fails the build)."""
    skipped = set(shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".cache",
                                         "results", "_bundled")(folder, names))
    if os.path.samefile(folder, os.path.join(REPO_ROOT, "dataset")):
        skipped |= set(names) - {"synth-mm", "ml-100k-mm"}
    return skipped | {n for n in names if os.path.isfile(os.path.join(folder, n, "pyvenv.cfg"))}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed (without dependencies, which the test
    environment already has) into a folder that is put first on PYTHONPATH."""
    root = tmp_path_factory.mktemp("wheel")
    # setuptools builds in the source folder (build/, *.egg-info): build a copy of the checkout,
    # so that the suite writes nothing into the repository.
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_not_sources)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
         str(source)], capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (root / "dist").glob("recbole_gtc-*.whl")
    target = root / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(target))
    return target, env


def test_wheel_carries_defaults_and_bundled_datasets(installed, tmp_path):
    target, env = installed
    probe = subprocess.run(
        [sys.executable, "-c", "import recbole_gtc.utils.utils as u; print(u.__file__); print(u.PROPERTIES_DIR); "
                               "print(u.DEFAULT_DATA_PATH)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    module, properties, data = probe.stdout.split()
    assert module.startswith(str(target))  # the installed copy, not the checkout
    assert properties == os.path.join(str(target), "recbole_gtc", "_bundled", "properties")
    assert os.path.isfile(os.path.join(properties, "overall.yaml"))
    assert os.path.isfile(os.path.join(properties, "model", "GTC.yaml"))
    for name in ("synth-mm", "ml-100k-mm"):
        assert os.path.isfile(os.path.join(data, name, f"{name}.yaml"))
    assert os.path.isfile(os.path.join(str(target), "bin", "recbole-gtc"))


def test_wheel_holds_the_library_only(installed):
    """Benchmarks, scripts and tests stay in the repository (setup.cfg's packages.find)."""
    target, _ = installed
    assert sorted(n for n in os.listdir(target) if not n.endswith(".dist-info")) == ["bin", "recbole_gtc"]


def test_installed_package_trains_from_an_empty_folder(installed, tmp_path):
    _, env = installed
    out = subprocess.run(
        [sys.executable, "-m", "recbole_gtc", "--model=BPR", "--dataset=synth-mm", "--epochs=1"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SUMMARY model=BPR dataset=synth-mm protocol=mmrec" in out.stdout  # the bundled dataset's YAML was read
    assert "valid_metric = Recall@20" in out.stderr  # the package defaults, not RecBole's MRR@10
    assert os.listdir(tmp_path / "saved")  # outputs under the working folder
