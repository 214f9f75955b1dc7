"""MMRec import: counts in = counts out, written files, validation errors, CLI behaviour."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recbole_gtc.prepare.mmrec import DatasetImportError, import_mmrec, random_split_labels

REPO = Path(__file__).resolve().parents[1]
NAME = "toy"
N_ITEMS = 6

# (userID, itemID, x_label). User 3 has no training row: its 2 rows must be dropped.
ROWS = [
    (0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 1), (0, 4, 2),
    (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 5, 2),
    (2, 5, 0), (2, 1, 1), (2, 3, 2),
    (3, 2, 1), (3, 4, 2),
]
EXPECTED = {
    "train": {"users": 3, "items": 4, "interactions": 6},
    "valid": {"users": 3, "items": 3, "interactions": 3},
    "test": {"users": 3, "items": 3, "interactions": 3},
}
EXPECTED_TOTAL = {"users": 3, "items": 6, "interactions": 12}


def write_inter(folder, rows, name=NAME, header="userID\titemID\trating\ttimestamp\tx_label"):
    lines = [header] + [f"{u}\t{i}\t5\t{1000 + n}\t{x}" for n, (u, i, x) in enumerate(rows)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")


def features(rows, dim, seed):
    return np.random.default_rng(seed).standard_normal((rows, dim))


@pytest.fixture
def src(tmp_path):
    """A valid MMRec folder with known counts (float64 features, converted on import)."""
    folder = tmp_path / "src"
    folder.mkdir()
    write_inter(folder, ROWS)
    np.save(folder / "image_feat.npy", features(N_ITEMS, 4, 0))
    np.save(folder / "text_feat.npy", features(N_ITEMS, 3, 1).astype(np.float32))
    return folder


def read_atomic(path):
    return pd.read_csv(path, sep="\t")


def test_counts_in_equal_counts_out(src, tmp_path):
    stats = import_mmrec(src, NAME, out_dir=tmp_path / "out", quiet=True)
    assert stats["splits"] == EXPECTED
    assert stats["total"] == EXPECTED_TOTAL
    assert stats["dropped_eval_rows"] == 2
    assert stats["n_items"] == N_ITEMS
    assert stats["features"] == {"image": [N_ITEMS, 4], "text": [N_ITEMS, 3]}
    assert stats["published"] is None and stats["mismatches"] == []


def test_written_atomic_files(src, tmp_path):
    out = tmp_path / "out"
    import_mmrec(src, NAME, out_dir=out, quiet=True)
    kept = [(u, i, x) for u, i, x in ROWS if u != 3]
    for label, split in enumerate(("train", "valid", "test")):
        df = read_atomic(out / f"{NAME}.{split}.inter")
        assert list(df.columns) == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
        assert sorted(zip(df["user_id:token"], df["item_id:token"])) == sorted(
            (u, i) for u, i, x in kept if x == label)
        assert (df["rating:float"] == 5).all()
    assert 3 not in set(read_atomic(out / f"{NAME}.test.inter")["user_id:token"])
    assert (out / f"{NAME}.item").read_text().splitlines() == ["item_id:token"] + [str(i) for i in range(N_ITEMS)]


def test_written_features_and_yaml(src, tmp_path):
    out = tmp_path / "out"
    import_mmrec(src, NAME, out_dir=out, quiet=True)
    for fname in ("image_feat.npy", "text_feat.npy"):
        copied = np.load(out / fname)
        assert copied.dtype == np.float32
        np.testing.assert_array_equal(copied, np.load(src / fname).astype(np.float32))
    text = (out / f"{NAME}.yaml").read_text()
    assert text.startswith(f"# Written by: python -m recbole_gtc.prepare mmrec {src} --dataset {NAME}")
    assert yaml.safe_load(text) == {
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "modalities": {"image": "image_feat.npy", "text": "text_feat.npy"},
        "eval_protocol": "mmrec",
    }


def test_custom_modalities_keep_their_order(src, tmp_path):
    np.save(src / "meta_feat.npy", features(N_ITEMS, 2, 2))
    out = tmp_path / "out"
    stats = import_mmrec(src, NAME, out_dir=out, modalities={"text": "text_feat.npy", "meta": "meta_feat.npy"},
                         quiet=True)
    assert list(stats["features"]) == ["text", "meta"]
    assert list(yaml.safe_load((out / f"{NAME}.yaml").read_text())["modalities"].items()) == [
        ("text", "text_feat.npy"), ("meta", "meta_feat.npy")]
    assert not (out / "image_feat.npy").exists()


def test_known_dataset_mismatch_is_a_warning(src, tmp_path, capsys):
    (src / f"{NAME}.inter").rename(src / "baby.inter")
    stats = import_mmrec(src, "baby", out_dir=tmp_path / "out")
    assert stats["published"] == {"users": 19445, "items": 7050, "interactions": 160792}
    assert stats["mismatches"] == ["users", "items", "interactions"]
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "160,792" in captured.out
    assert captured.err.startswith("warning: baby:")


def _remove(fname):
    return lambda folder: (folder / fname).unlink()


def _save(fname, array):
    return lambda folder: np.save(folder / fname, array)


def _with_nan(folder):
    feat = features(N_ITEMS, 3, 1)
    feat[4, 1] = np.nan
    np.save(folder / "text_feat.npy", feat)


def _rows(rows, **kwargs):
    return lambda folder: write_inter(folder, rows, **kwargs)


BROKEN = {
    "missing feature file": (_remove("image_feat.npy"), "image_feat.npy"),
    "NaN feature": (_with_nan, "text_feat.npy"),
    "inf feature": (_save("image_feat.npy", np.full((N_ITEMS, 4), np.inf)), "image_feat.npy"),
    "fewer rows than items": (_save("image_feat.npy", features(N_ITEMS - 1, 4, 0)), "image_feat.npy"),
    "more rows than items": (
        lambda f: [np.save(f / n, features(N_ITEMS + 2, 3, 0)) for n in ("image_feat.npy", "text_feat.npy")],
        "image_feat.npy"),
    "modalities disagree": (_save("text_feat.npy", features(N_ITEMS + 1, 3, 1)), "image_feat.npy"),
    "1-D feature": (_save("image_feat.npy", np.zeros(N_ITEMS)), "image_feat.npy"),
    "integer feature": (_save("text_feat.npy", np.zeros((N_ITEMS, 3), dtype=np.int64)), "text_feat.npy"),
    "not an npy file": (lambda f: (f / "text_feat.npy").write_text("hello"), "text_feat.npy"),
    "missing inter": (_remove(f"{NAME}.inter"), f"{NAME}.inter"),
    "missing split label": (_rows([r for r in ROWS if r[2] != 1]), f"{NAME}.inter"),
    "label lost with dropped user": (_rows([r for r in ROWS if r[2] != 1 or r[0] == 3]), f"{NAME}.inter"),
    "bad x_label": (_rows(ROWS + [(0, 5, 3)]), f"{NAME}.inter"),
    "missing column": (_rows(ROWS, header="userID\titemID\trating\ttimestamp\tsplit"), f"{NAME}.inter"),
    "negative id": (_rows(ROWS + [(-1, 2, 0)]), f"{NAME}.inter"),
    "non-integer id": (_rows(ROWS + [(0, "x7", 0)]), f"{NAME}.inter"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_folder_raises_one_line_naming_the_file(src, tmp_path, case):
    breaker, fname = BROKEN[case]
    breaker(src)
    with pytest.raises(DatasetImportError) as info:
        import_mmrec(src, NAME, out_dir=tmp_path / "out", quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert fname in message
    assert not (tmp_path / "out").exists(), "nothing may be written for a broken folder"


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetImportError, match="dataset folder not found"):
        import_mmrec(tmp_path / "nowhere", NAME, out_dir=tmp_path / "out")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "recbole_gtc.prepare", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_error_exits_2_with_one_line(src, tmp_path):
    _with_nan(src)
    result = run_cli("mmrec", src, "--dataset", NAME, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "text_feat.npy" in lines[0]


def test_cli_success(src, tmp_path):
    out = tmp_path / "out"
    result = run_cli("mmrec", src, "--dataset", NAME, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "12" in result.stdout
    assert (out / f"{NAME}.yaml").read_text().startswith(
        f"# Written by: python -m recbole_gtc.prepare mmrec {src} --dataset {NAME} --out {out}")
    # RecBole finds NAME's files only in a folder named NAME
    assert result.stdout.splitlines()[-1] == (f"rename {out} to {tmp_path / NAME}, then train on it: python "
                                              f"run_recbole_gtc.py --model=GTC --dataset={NAME} --data_path={tmp_path}")


def test_cli_ends_with_the_command_that_trains_on_what_it_wrote(src, tmp_path):
    from recbole_gtc.quick_start.quick_start import load_config

    out = tmp_path / "data" / NAME
    result = run_cli("mmrec", src, "--dataset", NAME, "--out", out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{NAME}: imported {src} -> {out}"
    assert lines[-1] == f"train on it: python run_recbole_gtc.py --model=GTC --dataset={NAME} --data_path={out.parent}"
    config = load_config("GTC", NAME, config_dict={"data_path": str(out.parent), "use_gpu": False, "graph_cache_dir": None,
                                                 "checkpoint_dir": str(tmp_path / "saved")})
    assert config["data_path"] == str(out)  # the command's flags find the folder written


@pytest.mark.parametrize("size", [1, 2, 3, 5, 10, 15, 31])
def test_random_split_labels_per_user(size):
    users = np.repeat([7, 3], size)
    labels = random_split_labels(users, np.random.default_rng(0))
    for user in (7, 3):
        counts = np.bincount(labels[users == user], minlength=3)
        n_eval = 0 if size < 3 else max(1, int(np.floor(size / 10 + 0.5)))
        n_test = 1 if size == 2 else n_eval
        assert counts.tolist() == [size - n_eval - n_test, n_eval, n_test]


# ----------------------------------------------------------------- duplicates and leaked pairs

LEAKED = ROWS + [(0, 0, 2), (1, 1, 2), (2, 1, 0)]  # u0 i0 and u1 i1: train and test; u2 i1: valid and train


def test_pairs_in_several_splits_are_refused_naming_splits_and_counts(src, tmp_path):
    write_inter(src, LEAKED)
    with pytest.raises(DatasetImportError) as info:
        import_mmrec(src, NAME, out_dir=tmp_path / "out", quiet=True)
    message = str(info.value)
    assert message.startswith(f"{src / (NAME + '.inter')}: 3 (user, item) pair(s) appear in more than one split "
                              "(train+test: 2, train+valid: 1; e.g. user 0 item 0 in train+test)")
    assert "--drop-leaked" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_drop_leaked_keeps_each_pair_in_its_earliest_split_and_reports(src, tmp_path, capsys):
    write_inter(src, LEAKED)
    out = tmp_path / "out"
    stats = import_mmrec(src, NAME, out_dir=out, quiet=True, drop_leaked=True)
    assert stats["cross_split_pairs_removed"] == {"train+test": 2, "train+valid": 1}
    assert "removed 3 row(s) from the later split(s)" in capsys.readouterr().err
    split_pairs = {split: set(zip(*[read_atomic(out / f"{NAME}.{split}.inter")[c]
                                    for c in ("user_id:token", "item_id:token")]))
                   for split in ("train", "valid", "test")}
    assert not split_pairs["train"] & split_pairs["valid"]
    assert not split_pairs["train"] & split_pairs["test"]
    assert not split_pairs["valid"] & split_pairs["test"]
    assert {(0, 0), (1, 1), (2, 1)} <= split_pairs["train"]
    # train gains u2 i1 (its valid copy is dropped); the test copies of u0 i0 and u1 i1 are dropped
    assert stats["splits"]["train"]["interactions"] == 7
    assert stats["splits"]["valid"] == {"users": 2, "items": 2, "interactions": 2}
    assert stats["splits"]["test"] == EXPECTED["test"]


def test_duplicates_within_a_split_are_removed_and_reported(src, tmp_path, capsys):
    write_inter(src, ROWS + [(0, 0, 0), (0, 0, 0), (1, 5, 2)])
    stats = import_mmrec(src, NAME, out_dir=tmp_path / "out", quiet=True)
    assert stats["duplicates_removed"] == {"train": 2, "test": 1}
    assert stats["splits"] == EXPECTED and stats["total"] == EXPECTED_TOTAL
    assert "removed 3 duplicate (user, item) row(s) within a split (train 2, test 1)" in capsys.readouterr().err


CLI_CASES = dict(BROKEN, **{
    "pairs in several splits": (_rows(LEAKED), f"{NAME}.inter"),
    "valid and test share a pair": (_rows(ROWS + [(0, 3, 2)]), f"{NAME}.inter"),
})


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_catalogue_exit_2_one_error_line(src, tmp_path, capsys, case):
    """Every broken folder through the command's main(): exit 2, one `error:` line naming the file."""
    from recbole_gtc.prepare.__main__ import main

    breaker, fname = CLI_CASES[case]
    breaker(src)
    assert main(["mmrec", str(src), "--dataset", NAME, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fname in lines[0], err
    assert "Traceback" not in err
