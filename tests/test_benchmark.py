"""The benchmarks (benchmarks/, outside the package) run end to end on tiny sizes (no timing
thresholds: benchmarks are not tests)."""

import json
import math
import os

import numpy as np
import pytest

from benchmarks import memory, speed


def test_fit_exponent_recovers_power_laws():
    sizes = [1000, 4000, 16000]
    assert memory.fit_exponent(sizes, [3.0 * s for s in sizes]) == pytest.approx(1.0)
    assert memory.fit_exponent(sizes, [0.5 * s ** 2 for s in sizes]) == pytest.approx(2.0)
    assert math.isnan(memory.fit_exponent([1000], [5.0]))


def test_peak_rss_sees_an_allocation():
    with memory.peak_rss() as mem:
        block = np.ones(40 * 2 ** 20 // 8)  # 40 MiB, touched
        block.sum()
    del block
    assert mem["added_mib"] > 30


def test_generated_dataset_shape(tmp_path):
    folder = memory.generate(str(tmp_path), "gen", n_users=30, n_items=50, n_inter=300)
    rows = {}
    for part in ("train", "valid", "test"):
        with open(os.path.join(folder, f"gen.{part}.inter")) as f:
            rows[part] = [line.split() for line in f.read().splitlines()[1:]]
    pairs = [tuple(r) for part in rows.values() for r in part]
    assert len(pairs) == len(set(pairs))  # unique pairs, no leak between splits
    assert {u for u, _ in rows["train"]} == {f"u{u}" for u in range(30)}  # every user trains
    assert np.load(os.path.join(folder, "image_feat.npy")).shape == (50, 64)


def test_speed_runs_on_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "out"
    code = speed.main([
        "--dataset", "synth-mm", "--variants", "GTC,GTC sampled,LightGCN", "--rounds", "1",
        "--max-steps", "2", "--tc-items", "300", "--threads", "1", "--out", str(out),
        "--config", json.dumps({"graph_cache_dir": None}),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| GTC sampled |" in printed and "wall seconds" in printed
    report = json.loads((out / "speed.json").read_text())
    rows = {r["variant"]: r for r in report["speed"]["rows"]}
    assert set(rows) == {"GTC", "GTC sampled", "LightGCN"}
    assert rows["LightGCN"]["train_ratio"] == pytest.approx(1.0)
    assert all(r["train_s"] > 0 and r["eval_s"] > 0 for r in rows.values())
    assert [r["what"] for r in report["tc"]["rows"]] == ["matmul", "tc fp32", "tc bf16"]
    assert report["command"].startswith("python -m benchmarks.speed --dataset synth-mm")
    assert (out / "speed.md").read_text().strip() == printed.strip()


def test_memory_curve_runs_on_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "out"
    code = memory.main(["--items", "200,400", "--users", "60", "--interactions", "600", "--threads", "1",
                        "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "exponent: " in printed
    mem = json.loads((out / "memory.json").read_text())["memory"]
    assert [r["items"] for r in mem["rows"]] == [200, 400]
    assert all(r["step_mib"] >= 0 and r["graph_mib"] >= 0 for r in mem["rows"])
    assert math.isfinite(mem["step_exponent"])
    assert (out / "memory.md").read_text().strip() == printed.strip()


def test_unknown_variant_is_refused():
    with pytest.raises(SystemExit, match="unknown variants"):
        speed.main(["--variants", "GTC,Nope"])


def test_memory_worker_builds_the_item_graph_once(monkeypatch):
    """The measured build writes the cache the model's constructor reads: kNN runs once per modality."""
    from recbole_gtc.model.layers import graphs

    calls = []
    real = graphs.knn_graph
    monkeypatch.setattr(graphs, "knn_graph", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    row = memory.memory_worker(150, 40, 400, {})
    assert calls == [(150, 64), (150, 32)]  # image then text, in the measured block only
    assert row["items"] == 150 and row["graph_mib"] >= 0 and row["model_s"] >= 0


def test_epoch_at_scale_trains_every_batch_of_one_epoch(capsys):
    """--epoch-items: one whole epoch (every training batch), in a fresh process, with its peaks."""
    code = memory.main(["--items", "0", "--epoch-items", "300", "--users", "50", "--interactions", "900",
                        "--threads", "1", "--config", json.dumps({"train_batch_size": 128})])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Memory of one GTC training step" not in printed  # --items 0: no curve
    line = next(row for row in printed.splitlines() if row.startswith("| 300 |"))
    items, users, train_inter, steps = (int(cell) for cell in line.strip("|").split("|")[:4])
    assert (items, users) == (300, 50)
    assert steps == math.ceil(train_inter / 128) and steps > 1  # the whole epoch, not one step
    row = memory.memory_worker(300, 50, 900, {"train_batch_size": 128})
    assert row["steps"] == 1  # the memory curve still measures one step
