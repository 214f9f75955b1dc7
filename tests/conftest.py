"""Fixtures shared by the test modules."""

import pytest

from recbole_gtc.prepare.synthetic import build_synthetic


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The planted generator's tiny preset (150 users, 80 items), as a data_path (one per module)."""
    root = tmp_path_factory.mktemp("tiny")
    build_synthetic("tiny", preset="tiny", out_dir=str(root / "tiny"), quiet=True)
    return str(root)
