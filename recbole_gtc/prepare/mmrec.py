"""Import an MMRec-format dataset folder as RecBole atomic files.

An MMRec folder ``SRC/`` holds ``NAME.inter`` (tab-separated, header
``userID itemID rating timestamp x_label``; 0-based integer ids; ``x_label`` 0
train, 1 valid, 2 test) and one ``.npy`` matrix per modality whose row ``r``
belongs to item id ``r`` (by default ``image_feat.npy`` and ``text_feat.npy``).

:func:`import_mmrec` validates the folder (every problem is one
:class:`DatasetImportError` line naming the file), drops validation/test rows of
users without a training row (as MMRec does), and writes to the output folder:

* ``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter`` (RecBole
  atomic files, read through ``benchmark_filename``); ids are *not* re-indexed,
  the tokens are the MMRec integer ids;
* ``NAME.item`` listing every item ``0 .. n_items-1`` so RecBole's vocabulary
  holds every item that has a feature row, interacted with or not;
* the feature matrices as float32 ``.npy`` under their original file names;
* ``NAME.yaml`` naming the fields, the split files and the modalities.

The builders in this package (:mod:`.synthetic`, :mod:`.movielens`) write an
MMRec folder with :func:`write_mmrec_folder` and import it through the same
path, with the split made by :func:`random_split_labels`.
"""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_gtc.data.features import first_line, load_feature_matrix
from recbole_gtc.utils.errors import DatasetImportError
from recbole_gtc.utils.files import check_output_dir, expand_path

REQUIRED_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
DEFAULT_MODALITIES = {"image": "image_feat.npy", "text": "text_feat.npy"}
#: Seed of the bundled datasets' builders (generator draws and per-user splits).
BUILD_SEED = 2024
SPLITS = ("train", "valid", "test")
ATOMIC_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")

#: Published statistics of the MMRec datasets: (users, items, interactions).
PUBLISHED_STATS = {
    "baby": (19445, 7050, 160792),
    "sports": (35598, 18357, 296337),
    "clothing": (39387, 23033, 278677),
    "elec": (192403, 63001, 1689188),
}


# --------------------------------------------------------------------------- reading


def _read_inter(path):
    if not path.is_file():
        raise DatasetImportError(f"{path}: interaction file not found")
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetImportError(f"{path}: cannot be read as tab-separated text ({first_line(exc)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetImportError(
            f"{path}: header lacks column(s) {', '.join(missing)} "
            f"(expected tab-separated {' '.join(REQUIRED_COLUMNS)})"
        )
    if df.empty:
        raise DatasetImportError(f"{path}: has a header but no interactions")
    return df[list(REQUIRED_COLUMNS)]


def _check_inter(df, path):
    for col in ("userID", "itemID"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise DatasetImportError(f"{path}: column {col} holds non-integer ids")
        if df[col].min() < 0:
            raise DatasetImportError(f"{path}: column {col} holds negative ids (min {df[col].min()})")
    for col in ("rating", "timestamp"):
        if not pd.api.types.is_numeric_dtype(df[col]) or df[col].isna().any():
            raise DatasetImportError(f"{path}: column {col} holds missing or non-numeric values")
    bad = ~df["x_label"].isin([0, 1, 2])
    if bad.any():
        raise DatasetImportError(
            f"{path}: x_label must be 0 (train), 1 (valid) or 2 (test); "
            f"found {df['x_label'][bad].iloc[0]!r} in {int(bad.sum())} row(s)"
        )
    _check_labels_present(df, path, "")


def _check_labels_present(df, path, context):
    present = set(df["x_label"].unique().tolist())
    for label, split in enumerate(SPLITS):
        if label not in present:
            raise DatasetImportError(f"{path}: no {split} rows (x_label={label}){context}")


def drop_duplicate_rows(df):
    """Keep the first row of each (user, item) pair within a split; return (kept, {split: n_removed})."""
    dup = df.duplicated(subset=["userID", "itemID", "x_label"], keep="first")
    removed = {split: int((dup & (df["x_label"] == label)).sum()) for label, split in enumerate(SPLITS)}
    return df[~dup].reset_index(drop=True), {k: v for k, v in removed.items() if v}


def cross_split_pairs(df):
    """(user, item) pairs found in more than one split: ({"train+test": n, ...}, first example row).

    Vectorised (one bit per split, summed per pair), so it stays fast on millions of rows.
    """
    df = df.drop_duplicates(["userID", "itemID", "x_label"])  # then a sum of bits is their OR
    bits = pd.Series(np.left_shift(1, df["x_label"].to_numpy(dtype=np.int64)), index=df.index)
    masks = bits.groupby([df["userID"], df["itemID"]]).sum()
    shared = masks[~masks.isin([1, 2, 4])]
    names = {m: "+".join(split for label, split in enumerate(SPLITS) if m >> label & 1) for m in range(8)}
    counts = {names[int(m)]: int(n) for m, n in shared.value_counts().items()}
    example = None
    if len(shared):
        (user, item), mask = next(iter(shared.items()))
        example = (int(user), int(item), names[int(mask)])
    return dict(sorted(counts.items())), example


def drop_leaked_rows(df):
    """Keep each cross-split pair only in its earliest split (train, then valid); return (kept, n_removed)."""
    first = df.groupby(["userID", "itemID"])["x_label"].transform("min")
    keep = df["x_label"] == first
    return df[keep].reset_index(drop=True), int((~keep).sum())


def _check_splits_disjoint(df, path, drop_leaked):
    """Refuse (or, with ``drop_leaked``, repair and report) pairs shared by several splits."""
    counts, example = cross_split_pairs(df)
    if not counts:
        return df, {}
    listing = ", ".join(f"{combo}: {n}" for combo, n in counts.items())
    total = sum(counts.values())
    user, item, combo = example
    if not drop_leaked:
        raise DatasetImportError(
            f"{path}: {total} (user, item) pair(s) appear in more than one split ({listing}; e.g. user {user} "
            f"item {item} in {combo}), so evaluation would score pairs the model trained on; fix the split, "
            f"or import with --drop-leaked to keep each such pair only in its earliest split (train, then valid)"
        )
    df, n_removed = drop_leaked_rows(df)
    print(f"warning: {path}: {total} (user, item) pair(s) appeared in more than one split ({listing}); "
          f"removed {n_removed} row(s) from the later split(s)", file=sys.stderr)
    return df, counts


def drop_cold_eval_rows(df):
    """Drop valid/test rows of users that have no training row; return (kept, n_dropped)."""
    train_users = df.loc[df["x_label"] == 0, "userID"].unique()
    keep = (df["x_label"] == 0) | df["userID"].isin(train_users)
    return df[keep].reset_index(drop=True), int((~keep).sum())


def _load_features(src, modalities, n_items, inter_path):
    feats = {name: load_feature_matrix(src / fname, DatasetImportError) for name, fname in modalities.items()}
    rows = {modalities[name]: feat.shape[0] for name, feat in feats.items()}
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{f} has {r}" for f, r in rows.items())
        raise DatasetImportError(f"{src / next(iter(rows))}: modality files have different row counts ({listing})")
    for fname, n_rows in rows.items():
        if n_rows != n_items:
            raise DatasetImportError(
                f"{src / fname}: has {n_rows} rows but {inter_path.name} references items 0..{n_items - 1} "
                f"(n_items = max itemID + 1 = {n_items}; one row per item)"
            )
    return feats


# --------------------------------------------------------------------------- statistics


def _counts(df):
    return {
        "users": int(df["userID"].nunique()),
        "items": int(df["itemID"].nunique()),
        "interactions": int(len(df)),
    }


def _compute_stats(df, name, n_items, n_dropped, feats, known_stats):
    stats = {
        "name": name,
        "splits": {split: _counts(df[df["x_label"] == label]) for label, split in enumerate(SPLITS)},
        "total": _counts(df),
        "n_items": n_items,
        "dropped_eval_rows": n_dropped,
        "features": {mod: list(feat.shape) for mod, feat in feats.items()},
        "published": None,
        "mismatches": [],
    }
    if known_stats and name in PUBLISHED_STATS:
        published = dict(zip(("users", "items", "interactions"), PUBLISHED_STATS[name]))
        stats["published"] = published
        stats["mismatches"] = [k for k, v in published.items() if stats["total"][k] != v]
    return stats


def format_stats(stats):
    """Human-readable report of :func:`import_mmrec`'s statistics."""
    lines = [f"{'split':<8}{'users':>10}{'items':>10}{'interactions':>14}"]
    for split in SPLITS + ("total",):
        c = stats["total"] if split == "total" else stats["splits"][split]
        lines.append(f"{split:<8}{c['users']:>10,}{c['items']:>10,}{c['interactions']:>14,}")
    lines.append(f"items with a feature row: {stats['n_items']:,}; "
                 f"dropped valid/test rows of users without training rows: {stats['dropped_eval_rows']:,}")
    if stats.get("duplicates_removed"):
        lines.append("removed duplicate rows within a split: "
                     + ", ".join(f"{k} {v:,}" for k, v in stats["duplicates_removed"].items()))
    if stats.get("cross_split_pairs_removed"):
        lines.append("pairs that were in several splits, kept in the earliest only: "
                     + ", ".join(f"{k} {v:,}" for k, v in stats["cross_split_pairs_removed"].items()))
    lines.append("features: " + ", ".join(f"{m} {r:,} x {d}" for m, (r, d) in stats["features"].items()))
    if stats["published"]:
        lines.append(f"{'':<14}{'found':>12}{'published':>12}")
        for key, expected in stats["published"].items():
            flag = "  MISMATCH" if key in stats["mismatches"] else "  ok"
            lines.append(f"{key:<14}{stats['total'][key]:>12,}{expected:>12,}{flag}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing


def _write_atomic(df, path):
    out = df[["userID", "itemID", "rating", "timestamp"]]
    out.to_csv(path, sep="\t", index=False, header=list(ATOMIC_HEADER), lineterminator="\n")


def _write_yaml(path, modalities, provenance):
    lines = [f"# {line}" for line in provenance]
    lines += [
        "USER_ID_FIELD: user_id",
        "ITEM_ID_FIELD: item_id",
        "load_col:",
        "  inter: [user_id, item_id]",
        "  item: [item_id]",
        "benchmark_filename: [train, valid, test]",
        "modalities:",
    ]
    lines += [f"  {mod}: {fname}" for mod, fname in modalities.items()]
    lines.append("eval_protocol: mmrec")
    path.write_text("\n".join(lines) + "\n")


def check_dataset_name(name):
    """``name`` names the dataset's folder and its files (``NAME.train.inter``, ...): a plain
    name, not a path (``a/b`` would write into a folder ``a`` that does not exist)."""
    text = str(name)
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if not text.strip() or text in (".", "..") or any(sep in text for sep in separators) or "\0" in text:
        raise DatasetImportError(f"--dataset={text!r}: must be a dataset name (a folder and file name, no '/'); "
                                 f"choose where the dataset is written with --out DIR")


def check_output_folder(out, force=False):
    """Refuse to write a dataset where one would be overwritten or merged: ``out`` must be
    absent or empty unless ``force`` (which replaces it, never merges); a file in the way,
    an unwritable parent or an over-long name is an error naming the path."""
    check_output_dir(out, "output folder", create=False, empty_unless=force, error=DatasetImportError)


def builder_outputs(name, out_dir=None, keep_raw=None, force=False):
    """A builder's output folder (default ``./dataset/<name>``) and optional raw MMRec folder,
    both checked by :func:`check_output_folder` before any work; a raw folder that may be
    replaced is emptied. Returns ``(out_dir, keep_raw)`` with paths expanded."""
    check_dataset_name(name)
    out_dir = expand_path(out_dir) if out_dir is not None else os.path.join(os.getcwd(), "dataset", name)
    check_output_folder(Path(out_dir), force)
    if keep_raw is not None:
        keep_raw = expand_path(keep_raw)
        check_output_folder(Path(keep_raw), force)
        shutil.rmtree(keep_raw, ignore_errors=True)
    return out_dir, keep_raw


def _write_outputs(out, name, df, n_items, feats, modalities, provenance, force=False):
    # Everything is written to a temporary sibling and renamed into place when complete,
    # so an import killed half way leaves nothing under ``out`` that loads as a dataset.
    check_output_folder(out, force)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for label, split in enumerate(SPLITS):
            _write_atomic(df[df["x_label"] == label], tmp / f"{name}.{split}.inter")
        items = pd.DataFrame({"item_id:token": np.arange(n_items)})
        items.to_csv(tmp / f"{name}.item", sep="\t", index=False, lineterminator="\n")
        for mod, feat in feats.items():
            np.save(tmp / modalities[mod], np.ascontiguousarray(feat, dtype=np.float32))
        _write_yaml(tmp / f"{name}.yaml", modalities, provenance)
        if out.exists():
            shutil.rmtree(out)  # empty, or non-empty with force: replaced, never merged
        os.replace(tmp, out)
    except OSError as exc:
        raise DatasetImportError(f"{out}: cannot write the dataset ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_mmrec(src_dir, name, out_dir=None, modalities=None, known_stats=True, provenance=None, quiet=False,
                 drop_leaked=False, force=False, source=None):
    """Validate the MMRec folder ``src_dir`` and write dataset ``name`` for RecBole.

    ``modalities`` maps modality names to ``.npy`` file names in ``src_dir``
    (default :data:`DEFAULT_MODALITIES`); ``out_dir`` defaults to ``./dataset/<name>``
    of the working directory (where the runner looks first) and must be absent or
    empty unless ``force`` (which replaces it); ``provenance`` are comment lines for the YAML
    (default: the equivalent CLI command). Prints the statistics unless ``quiet``
    (naming the source as ``source``, default ``src_dir``: a builder's temporary MMRec
    folder is gone when it returns) and returns them as a dict. Raises :class:`DatasetImportError`.

    Duplicate (user, item) rows within a split are removed (first kept) and reported on
    stderr. A pair in more than one split (a validation or test pair that is also trained
    on, or one in both valid and test) is refused, naming the splits and counts, unless
    ``drop_leaked``: then each such pair is kept only in its earliest split (train, then
    valid) and the removal is reported. Either way no evaluation pair stays in training.
    """
    check_dataset_name(name)
    src = Path(expand_path(src_dir))
    modalities = dict(modalities or DEFAULT_MODALITIES)
    out = Path(expand_path(out_dir)) if out_dir is not None else Path.cwd() / "dataset" / name
    check_output_folder(out, force)  # before the (long) validation, so a refusal comes first
    if not src.is_dir():
        raise DatasetImportError(f"{src}: dataset folder not found")
    if out.resolve() == src.resolve():
        raise DatasetImportError(f"{out}: output folder must differ from the source folder")
    inter_path = src / f"{name}.inter"
    df = _read_inter(inter_path)
    _check_inter(df, inter_path)
    n_items = int(df["itemID"].max()) + 1
    feats = _load_features(src, modalities, n_items, inter_path)
    df, duplicates = drop_duplicate_rows(df)
    if duplicates:
        listing = ", ".join(f"{split} {n}" for split, n in duplicates.items())
        print(f"warning: {inter_path}: removed {sum(duplicates.values())} duplicate (user, item) row(s) within a "
              f"split ({listing}); each pair is kept once", file=sys.stderr)
    df, leaked = _check_splits_disjoint(df, inter_path, drop_leaked)
    df, n_dropped = drop_cold_eval_rows(df)
    _check_labels_present(df, inter_path, " after dropping valid/test rows of users without training rows")
    stats = _compute_stats(df, name, n_items, n_dropped, feats, known_stats)
    stats["duplicates_removed"] = duplicates
    stats["cross_split_pairs_removed"] = leaked
    if provenance is None:
        provenance = [f"Written by: python -m recbole_gtc.prepare mmrec {src} --dataset {name}"]
    _write_outputs(out, name, df, n_items, feats, modalities, provenance, force)
    stats["out_dir"] = str(out)
    if not quiet:
        print(f"{name}: imported {source or src} -> {out}")
        print(format_stats(stats))
    if stats["mismatches"]:
        print(f"warning: {name}: {', '.join(stats['mismatches'])} differ from the published statistics",
              file=sys.stderr)
    return stats


# --------------------------------------------------------------------------- builders' helpers


def random_split_labels(user_ids, rng):
    """Per-user random 8:1:1 split: an ``x_label`` array aligned with ``user_ids``.

    A user with ``n`` rows gets ``max(1, round(n/10))`` test and as many valid
    rows when ``n >= 3`` (so always >= 1 training row); ``n == 2`` gives one
    train and one test row; ``n == 1`` a training row. Vectorised: rows are
    ordered by (user, random key) and labelled by their rank within the user.
    """
    user_ids = np.asarray(user_ids)
    order = np.lexsort((rng.random(len(user_ids)), user_ids))
    sorted_users = user_ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(user_ids)])
    rank = np.arange(len(user_ids)) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    n_eval = np.where(n >= 3, np.maximum(1, np.floor(n / 10 + 0.5)), 0).astype(np.int64)
    n_test = np.where(n == 2, 1, n_eval)
    labels_sorted = np.where(rank < n_test, 2, np.where(rank < n_test + n_eval, 1, 0))
    labels = np.empty(len(user_ids), dtype=np.int64)
    labels[order] = labels_sorted
    return labels


def write_mmrec_folder(folder, name, users, items, labels, features, ratings=None, timestamps=None):
    """Write an MMRec-format folder: ``NAME.inter`` plus ``{file_name: matrix}`` features.

    Rows are written sorted by (user, item); ratings default to 1, timestamps to 0.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(users)
    df = pd.DataFrame({
        "userID": np.asarray(users, dtype=np.int64),
        "itemID": np.asarray(items, dtype=np.int64),
        "rating": np.ones(n, dtype=np.int64) if ratings is None else np.asarray(ratings),
        "timestamp": np.zeros(n, dtype=np.int64) if timestamps is None else np.asarray(timestamps),
        "x_label": np.asarray(labels, dtype=np.int64),
    })
    df = df.sort_values(["userID", "itemID"], kind="stable")
    df.to_csv(folder / f"{name}.inter", sep="\t", index=False, lineterminator="\n")
    for fname, matrix in features.items():
        np.save(folder / fname, np.ascontiguousarray(matrix, dtype=np.float32))
    return folder
