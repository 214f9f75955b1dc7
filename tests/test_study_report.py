"""Report files of a comparison study (recbole_gtc.study.report): Markdown, CSVs, PNG."""

import csv
import math
import os

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from test_study_stats import make_records

from recbole_gtc.study.report import markdown_table, plot_png, write_report
from recbole_gtc.study.stats import summarize
from recbole_gtc.utils.errors import RecboleGTCError

METRICS = ["recall@20", "ndcg@20"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _same(cell, value):
    """A CSV cell read back equals a summary value (None -> empty, nan -> nan, lists)."""
    if value is None:
        return cell == ""
    if isinstance(value, bool):
        return cell == str(value)
    if isinstance(value, list):
        return cell == " ".join(map(str, value))
    if isinstance(value, str):
        return cell == value
    if isinstance(value, float) and math.isnan(value):
        return math.isnan(float(cell))
    return float(cell) == value


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "report" / "nested"
    return write_report(make_records(), METRICS, str(out), "Toy comparison")


def test_report_files_and_markdown(report):
    assert set(report) >= {"markdown", "md", "csv", "runs_csv", "png"}
    for key, name in [("md", "comparison.md"), ("csv", "comparison.csv"),
                      ("runs_csv", "runs.csv"), ("png", "comparison.png")]:
        assert os.path.basename(report[key]) == name and os.path.isfile(report[key])
    assert not [f for f in os.listdir(os.path.dirname(report["md"])) if f.endswith(".tmp")]
    with open(report["md"], encoding="utf-8") as f:
        text = f.read()
    assert text == report["markdown"]
    assert text.startswith("# Toy comparison\n")
    assert "Reference model: **A**" in text
    assert "best validation epoch" in text and "sample standard deviation" in text
    assert "Wilcoxon" in text and "paired t-test" in text
    summary = summarize(make_records(), METRICS)
    for row in summary:
        for m in METRICS:
            s = row["metrics"][m]
            assert f"{s['mean']:.4f} ± {s['std']:.4f}" in text
    other = summary[1]["metrics"]
    # reference A against B[x=1] (whose means include its unpaired seed 4)
    for m in METRICS:
        improvement = other[m]["improvement"]
        assert f"| B[x=1] | {m} | {improvement * 100:+.2f}% |" in text
    assert f"{other['recall@20']['improvement'] * 100:+.2f}%" == "-15.85%"
    assert f"{other['ndcg@20']['t_p']:.3g} (3 seeds)" in text
    assert "0.00781 (8 users)" in text          # exact Wilcoxon 2/2^8 to 3 significant digits
    assert "| n/a |" in text                      # ndcg has no per-user values
    assert "| A (reference) | 3 |" in text


def test_markdown_table_single_label_has_no_comparison():
    records = [r for r in make_records() if r["label"] == "A"]
    text = markdown_table(summarize(records, METRICS), METRICS)
    assert "Wilcoxon" not in text and text.count("\n") == 2   # header, rule, one row
    assert "| A (reference) | 3 |" in text


def test_comparison_csv_reads_back_the_summary(report):
    summary = report["summary"]
    with open(report["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["A", "B[x=1]"]
    for row, cells in zip(summary, rows):
        expected = {k: row[k] for k in ("label", "model", "reference", "n_seeds", "seeds", "paired_seeds",
                                        "epochs_mean", "train_seconds_per_epoch_median",
                                        "train_seconds_per_epoch_min", "train_seconds_per_epoch_max")}
        for m in METRICS:
            expected.update({f"{m}_{k}": v for k, v in row["metrics"][m].items()})
        assert set(cells) == set(expected)
        for key, value in expected.items():
            assert _same(cells[key], value), (row["label"], key, cells[key], value)
    assert float(rows[1]["recall@20_wilcoxon_p"]) == 2 / 2 ** 8


def test_runs_csv_one_row_per_record(report):
    records = make_records()
    with open(report["runs_csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    for record, row in zip(records, rows):
        assert row["label"] == record["label"] and int(row["seed"]) == record["seed"]
        assert row["run_id"] == record["run_id"] and row["model"] == record["model"]
        assert row["epochs"] == ("" if record["epochs"] is None else str(record["epochs"]))
        assert float(row["train_seconds_per_epoch"]) == record["train_seconds_per_epoch"]
        for m in METRICS:
            assert float(row[m]) == record["test_result"][m]


def test_png_and_figure_bars(report, tmp_path):
    with open(report["png"], "rb") as f:
        assert f.read(8) == PNG_MAGIC
    summary = report["summary"]
    fig = plot_png(str(tmp_path / "again.png"), summary, METRICS, "Toy")
    with open(tmp_path / "again.png", "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert len(fig.axes) == 2
    bars, time_ax = fig.axes
    groups = [c for c in bars.containers if isinstance(c, BarContainer)]
    assert len(groups) == len(summary)
    for container, row in zip(groups, summary):
        heights = [patch.get_height() for patch in container.patches]
        np.testing.assert_allclose(heights, [row["metrics"][m]["mean"] for m in METRICS], rtol=0, atol=1e-15)
    np.testing.assert_allclose([p.get_height() for p in time_ax.patches],
                               [row["train_seconds_per_epoch_median"] for row in summary], rtol=0, atol=1e-15)
    assert [t.get_text() for t in bars.get_xticklabels()] == METRICS


def test_time_error_bars_span_the_seeds_and_never_go_below_zero(tmp_path):
    """One slow seed makes mean - std negative; the bars show median and min..max instead."""
    records = [dict(r, train_seconds_per_epoch=s) for r, s in zip(make_records()[:3], (0.1, 0.1, 5.0))]
    summary = summarize(records, METRICS)
    fig = plot_png(str(tmp_path / "t.png"), summary, METRICS, "Toy")
    errorbar = next(c for c in fig.axes[1].containers if isinstance(c, ErrorbarContainer))
    (segment,) = errorbar.lines[2][0].get_segments()
    assert [y for _, y in segment] == [0.1, 5.0]
    assert fig.axes[1].patches[0].get_height() == 0.1  # the median, not the mean 1.73
    text = markdown_table(summary, METRICS)
    assert "| 0.10 (0.10–5.00) |" in text


def test_long_labels_stand_upright_on_the_time_panel(report, tmp_path):
    """Slanted long variant labels overlap their neighbours, so they are set upright."""
    summary = report["summary"]
    short = plot_png(str(tmp_path / "short.png"), summary, METRICS, "Toy")
    assert {t.get_rotation() for t in short.axes[1].get_xticklabels()} == {30.0}
    long_summary = [dict(row, label=f"GTC[learning_rate=0.001,variant={i}]") for i, row in enumerate(summary)]
    upright = plot_png(str(tmp_path / "long.png"), long_summary, METRICS, "Toy")
    ticks = upright.axes[1].get_xticklabels()
    assert {t.get_rotation() for t in ticks} == {90.0}
    assert [t.get_text() for t in ticks] == [row["label"] for row in long_summary]
    assert upright.get_figheight() > short.get_figheight()


def test_write_report_refuses_unknown_reference(tmp_path):
    with pytest.raises(RecboleGTCError, match="reference 'C'"):
        write_report(make_records(), METRICS, str(tmp_path / "r"), "T", reference="C")
    assert not (tmp_path / "r").exists()
