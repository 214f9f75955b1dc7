"""Planted synthetic generator: reproducible bytes, shapes and counts, and the planted signal."""

import hashlib
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_gtc.prepare.__main__ import main
from recbole_gtc.prepare.synthetic import (affinity, generate, make_config, render_features, resample_nuisance,
                                           sample_latents, sample_maps)

REPO = Path(__file__).resolve().parents[1]
NAME = "synth-tiny"


def file_hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def cli_args(out, seed):
    return ["synthetic", "--dataset", NAME, "--preset", "tiny", "--seed", str(seed), "--out", str(out)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / NAME
    assert main(cli_args(out, 7)) == 0
    return out


def test_same_seed_same_bytes_in_a_fresh_process(tiny_dir, tmp_path):
    again = tmp_path / NAME
    result = subprocess.run([sys.executable, "-m", "recbole_gtc.prepare", *cli_args(again, 7)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    hashes = file_hashes(tiny_dir)
    assert len(hashes) == 7
    assert file_hashes(again) == hashes


def test_different_seed_different_bytes(tiny_dir, tmp_path):
    other = tmp_path / NAME
    assert main(cli_args(other, 8)) == 0
    a, b = file_hashes(tiny_dir), file_hashes(other)
    for fname in ("image_feat.npy", "text_feat.npy", f"{NAME}.train.inter", f"{NAME}.test.inter"):
        assert a[fname] != b[fname]


def test_cli_names_no_temporary_folder_and_ends_with_a_command_that_trains(tmp_path, capsys):
    from recbole_gtc.cli import main as runner_main

    out = tmp_path / "data" / NAME
    assert main(cli_args(out, 7)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{NAME}: imported the planted generator (preset tiny) -> {out}"  # not its scratch MMRec folder
    assert "synth-mmrec-" not in "\n".join(lines)
    command = shlex.split(lines[-1].removeprefix("train on it: "))
    assert command[-3:] == ["--model=GTC", f"--dataset={NAME}", f"--data_path={out.parent}"]
    assert runner_main([*command[-2:], "--model=BPR", "--epochs=1", "--use_gpu=False", "--state=WARNING",
                        "--graph_cache_dir=None", f"--checkpoint_dir={tmp_path / 'saved'}"]) == 0
    assert "SUMMARY model=BPR dataset=synth-tiny" in capsys.readouterr().out


def test_interaction_counts_and_splits():
    cfg = make_config("tiny", seed=3)
    data = generate(cfg)
    pairs = data.users * cfg.items + data.items
    assert len(np.unique(pairs)) == len(pairs), "a user drew the same item twice"
    per_user = np.bincount(data.users, minlength=cfg.users)
    assert per_user.min() >= cfg.min_inter
    assert np.bincount(data.items, minlength=cfg.items).min() >= 1, "every item needs an interaction"
    for label in (0, 1, 2):
        assert np.bincount(data.users[data.labels == label], minlength=cfg.users).min() >= 1


def test_written_shapes(tiny_dir):
    cfg = make_config("tiny")
    assert np.load(tiny_dir / "image_feat.npy").shape == (cfg.items, cfg.image_dim)
    assert np.load(tiny_dir / "text_feat.npy").shape == (cfg.items, cfg.text_dim)
    total = sum(len(pd.read_csv(tiny_dir / f"{NAME}.{s}.inter", sep="\t")) for s in ("train", "valid", "test"))
    assert total >= cfg.users * cfg.min_inter
    header = (tiny_dir / f"{NAME}.yaml").read_text().splitlines()[0]
    assert header == f"# Written by: python -m recbole_gtc.prepare synthetic --dataset {NAME} --preset tiny " \
                     f"--users 150 --items 80 --image-dim 32 --text-dim 16 --min-inter 5 --seed 7"


def test_overrides_set_widths_and_minimum(tmp_path):
    assert main(["synthetic", "--dataset", "w", "--preset", "tiny", "--users", "40", "--items", "30",
                 "--image-dim", "12", "--text-dim", "5", "--min-inter", "7", "--out", str(tmp_path)]) == 0
    assert np.load(tmp_path / "image_feat.npy").shape == (30, 12)
    assert np.load(tmp_path / "text_feat.npy").shape == (30, 5)
    inter = pd.concat(pd.read_csv(tmp_path / f"w.{s}.inter", sep="\t") for s in ("train", "valid", "test"))
    assert inter.groupby("user_id:token").size().min() >= 7
    assert inter["user_id:token"].nunique() == 40


def test_nuisance_is_in_features_but_not_in_preference():
    cfg = make_config("tiny")
    rng = np.random.default_rng(0)
    latents, maps = sample_latents(cfg, rng), sample_maps(cfg, rng)
    other = resample_nuisance(latents, np.random.default_rng(1))
    np.testing.assert_array_equal(affinity(other), affinity(latents))
    feats = render_features(latents, maps, cfg, np.random.default_rng(2))
    feats_other = render_features(other, maps, cfg, np.random.default_rng(2))
    assert not np.allclose(feats["image"], feats_other["image"])
    changed = replace(latents, visual=rng.standard_normal(latents.visual.shape))
    assert not np.allclose(affinity(changed), affinity(latents))


def recall_at_k(folder, name, k):
    """Micro recall@k on test of a content-only scorer and of random ranking (its expectation)."""
    split = {s: pd.read_csv(folder / f"{name}.{s}.inter", sep="\t") for s in ("train", "test")}
    feats = [np.load(folder / f) for f in ("image_feat.npy", "text_feat.npy")]
    feats = np.hstack([(f - f.mean(0)) / f.std(0) for f in feats])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    n_users, n_items = split["train"]["user_id:token"].max() + 1, feats.shape[0]
    seen = np.zeros((n_users, n_items), dtype=bool)
    seen[split["train"]["user_id:token"], split["train"]["item_id:token"]] = True
    profile = seen @ feats / seen.sum(1, keepdims=True)
    scores = np.where(seen, -np.inf, profile @ feats.T)
    top = np.argsort(-scores, axis=1)[:, :k]
    hit = np.zeros_like(seen)
    np.put_along_axis(hit, top, True, axis=1)
    test_u, test_i = split["test"]["user_id:token"], split["test"]["item_id:token"]
    content = hit[test_u, test_i].mean()
    random = (k / (n_items - seen.sum(1)))[test_u].mean()
    return content, random


def test_content_scorer_beats_random_on_tiny(tiny_dir):
    content, random = recall_at_k(tiny_dir, NAME, k=10)
    assert content > 1.5 * random


def test_content_scorer_beats_random_on_committed_synth_mm():
    folder = REPO / "dataset" / "synth-mm"
    if not folder.is_dir():
        pytest.skip("dataset/synth-mm not built")
    content, random = recall_at_k(folder, "synth-mm", k=20)
    assert content > 3 * random
