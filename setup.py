"""Build hook: ship the repository's ``properties/`` and bundled datasets inside the package.

The repository layout keeps ``properties/`` and ``dataset/`` at the top level (next to
``recbole_gtc/``), as RecBole plugins do. A wheel holds only packages, so the build
copies them to ``recbole_gtc/_bundled/``, where ``recbole_gtc.utils.utils`` finds them when
the package does not run from a checkout. Metadata lives in ``setup.cfg``.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
#: What the wheel carries besides the code: the defaults and the bundled datasets.
SHIPPED = ("properties", os.path.join("dataset", "synth-mm"), os.path.join("dataset", "ml-100k-mm"))


class BuildWithBundledData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        target = os.path.join(self.build_lib, "recbole_gtc", "_bundled")
        for rel in SHIPPED:
            src = os.path.join(HERE, rel)
            if not os.path.isdir(src):
                raise FileNotFoundError(f"{src}: missing from the source tree; cannot build the package")
            dst = os.path.join(target, rel)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cache", "__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithBundledData})
