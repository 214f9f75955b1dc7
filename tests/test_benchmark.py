"""The benchmark harness runs end to end on tiny sizes (no timing thresholds: benchmarks are not tests)."""

import json
import math
import os

import numpy as np
import pytest

from recbole_gtc import benchmark


def test_fit_exponent_recovers_power_laws():
    sizes = [1000, 4000, 16000]
    assert benchmark.fit_exponent(sizes, [3.0 * s for s in sizes]) == pytest.approx(1.0)
    assert benchmark.fit_exponent(sizes, [0.5 * s ** 2 for s in sizes]) == pytest.approx(2.0)
    assert math.isnan(benchmark.fit_exponent([1000], [5.0]))


def test_peak_rss_sees_an_allocation():
    with benchmark.peak_rss() as mem:
        block = np.ones(40 * 2 ** 20 // 8)  # 40 MiB, touched
        block.sum()
    del block
    assert mem["added_mib"] > 30


def test_generated_dataset_shape(tmp_path):
    folder = benchmark.write_generated(str(tmp_path), "gen", n_users=30, n_items=50, n_inter=300)
    rows = {}
    for part in ("train", "valid", "test"):
        with open(os.path.join(folder, f"gen.{part}.inter")) as f:
            rows[part] = [line.split() for line in f.read().splitlines()[1:]]
    pairs = [tuple(r) for part in rows.values() for r in part]
    assert len(pairs) == len(set(pairs))  # unique pairs, no leak between splits
    assert {u for u, _ in rows["train"]} == {f"u{u}" for u in range(30)}  # every user trains
    assert np.load(os.path.join(folder, "image_feat.npy")).shape == (50, 64)


def test_harness_runs_on_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "out"
    code = benchmark.main([
        "--dataset", "synth-mm", "--variants", "GTC,GTC sampled,LightGCN", "--rounds", "1",
        "--max-steps", "2", "--items", "200,400", "--users", "60", "--interactions", "600", "--tc-items", "300",
        "--threads", "1", "--out", str(out),
        "--config", json.dumps({"graph_cache_dir": None}),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "exponent: " in printed and "| GTC sampled |" in printed
    report = json.loads((out / "benchmark.json").read_text())
    speed = {r["variant"]: r for r in report["speed"]["rows"]}
    assert set(speed) == {"GTC", "GTC sampled", "LightGCN"}
    assert speed["LightGCN"]["train_ratio"] == pytest.approx(1.0)
    assert all(r["train_s"] > 0 and r["eval_s"] > 0 for r in speed.values())
    mem = report["memory"]
    assert [r["items"] for r in mem["rows"]] == [200, 400]
    assert all(r["step_mib"] >= 0 and r["graph_mib"] >= 0 for r in mem["rows"])
    assert math.isfinite(mem["step_exponent"])
    assert [r["what"] for r in report["tc"]["rows"]] == ["matmul", "tc fp32", "tc bf16"]
    assert (out / "benchmark.md").read_text().strip() == printed.strip()


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit, match="unknown variants"):
        benchmark.main(["--variants", "GTC,Nope", "--skip-memory", "--tc-items", "0"])


def test_memory_worker_builds_the_item_graph_once(monkeypatch):
    """The measured build writes the cache the model's constructor reads: kNN runs once per modality."""
    from recbole_gtc.model import graphs

    calls = []
    real = graphs.knn_graph
    monkeypatch.setattr(graphs, "knn_graph", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    row = benchmark.memory_worker(150, 40, 400, {})
    assert calls == [(150, 64), (150, 32)]  # image then text, in the measured block only
    assert row["items"] == 150 and row["graph_mib"] >= 0 and row["model_s"] >= 0


def test_epoch_at_scale_trains_every_batch_of_one_epoch(capsys):
    """--epoch-items: one whole epoch (every training batch), in a fresh process, with its peaks."""
    code = benchmark.main(["--skip-speed", "--skip-memory", "--tc-items", "0", "--epoch-items", "300",
                           "--users", "50", "--interactions", "900", "--threads", "1",
                           "--memory-config", json.dumps({"train_batch_size": 128})])
    assert code == 0
    printed = capsys.readouterr().out
    line = next(row for row in printed.splitlines() if row.startswith("| 300 |"))
    items, users, train_inter, steps = (int(cell) for cell in line.strip("|").split("|")[:4])
    assert (items, users) == (300, 50)
    assert steps == math.ceil(train_inter / 128) and steps > 1  # the whole epoch, not one step
    row = benchmark.memory_worker(300, 50, 900, {"train_batch_size": 128})
    assert row["steps"] == 1  # the memory curve still measures one step
