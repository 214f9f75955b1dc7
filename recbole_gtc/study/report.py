"""The results of a comparison study as files: a Markdown page, two CSV tables and a PNG.

:func:`write_report` writes, into one folder,

* ``comparison.md``: what the numbers are, the reference model, the tests, a table of
  mean +- std per model and a table of the reference's comparison with every other model;
* ``comparison.csv``: one row per model with every number of the summary;
* ``runs.csv``: one row per run (model spec x seed);
* ``comparison.png``: test metrics (grouped bars) and training seconds per epoch (median over
  seeds, the bar's range from the fastest to the slowest seed).

Every file is written through :func:`recbole_gtc.utils.files.atomic_write`. The summary rows are
those of :func:`recbole_gtc.study.stats.summarize`.
"""

import csv
import math
import os

import numpy as np

from recbole_gtc.study.stats import TIME_STATS, summarize
from recbole_gtc.utils.files import atomic_write, check_output_dir

MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
RUNS_CSV_FILE = "runs.csv"
PNG_FILE = "comparison.png"

#: Columns of ``comparison.csv`` for each metric ``m``, named ``<m>_<key>``.
METRIC_COLUMNS = ("mean", "std", "improvement", "t_p", "wilcoxon_p", "n_users")

WHAT_THE_NUMBERS_ARE = (
    "Numbers are mean ± sample standard deviation (ddof=1) over seeds of the test metrics, "
    "each run tested at its best validation epoch. "
    "Train s/epoch: each run's median training seconds over its epochs after the first (which also "
    "pays one-off set-up costs; a run of one epoch counts that epoch), then the median over seeds "
    "and, in brackets, the fastest and the slowest seed."
)
TESTS_USED = (
    "Improvement = (reference − model) / model, of the means over seeds. "
    "t-test p: two-sided paired t-test over the seeds both models ran. "
    "Wilcoxon p: two-sided Wilcoxon signed-rank test over per-user test values, users matched "
    "by token and pooled over those seeds, zero differences dropped. "
    "n/a: not computable (one seed, or no per-user values)."
)


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, spec):
    return "n/a" if _missing(value) else format(value, spec)


def _fmt_mean_std(mean, std, spec):
    return "n/a" if _missing(mean) else f"{_fmt(mean, spec)} ± {_fmt(std, spec)}"


def _fmt_median_range(median, low, high, spec):
    return "n/a" if _missing(median) else f"{_fmt(median, spec)} ({_fmt(low, spec)}–{_fmt(high, spec)})"


def _time_columns():
    return [f"train_seconds_per_epoch_{key}" for key in TIME_STATS]


def _fmt_percent(fraction):
    return "n/a" if _missing(fraction) else f"{fraction * 100:+.2f}%"


def _cell(text):
    """``text`` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def _table(header, align, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _reference(summary):
    return next((row for row in summary if row["reference"]), summary[0])


def markdown_table(summary, metrics):
    """The summary as Markdown: a results table and, with two or more models, a comparison table.

    The results table has one row per label: the label (the reference marked
    ``(reference)``), its number of seeds, each metric as ``mean ± std`` (4 decimals), the
    mean number of epochs and the training seconds per epoch (``median (min–max)`` over seeds,
    2 decimals).
    The comparison table has one row per non-reference label and metric: the reference's
    relative improvement over it in %, the paired t-test p (with the number of paired seeds)
    and the per-user Wilcoxon p (with the number of user pairs), p-values to 3 significant
    digits. Values that could not be computed read ``n/a``.

    Args:
        summary (list of dict): rows of :func:`~recbole_gtc.study.stats.summarize`.
        metrics (list of str): the metrics to show, in order.

    Returns:
        str: the Markdown tables, separated by a blank line, without a trailing newline.
    """
    reference = _reference(summary)
    rows = []
    for row in summary:
        label = f"{row['label']} (reference)" if row["reference"] else row["label"]
        cells = [label, str(row["n_seeds"])]
        cells += [_fmt_mean_std(row["metrics"][m]["mean"], row["metrics"][m]["std"], ".4f") for m in metrics]
        cells += [
            _fmt(row["epochs_mean"], ".1f"),
            _fmt_median_range(*[row[column] for column in _time_columns()], ".2f"),
        ]
        rows.append(cells)
    text = _table(
        ["Model", "Seeds", *metrics, "Epochs", "Train s/epoch"],
        ["---", "---:", *["---:"] * len(metrics), "---:", "---:"],
        rows,
    )
    others = [row for row in summary if not row["reference"]]
    if not others:
        return text
    comparisons = []
    for row in others:
        n_paired = len(row["paired_seeds"])
        for m in metrics:
            entry = row["metrics"][m]
            users = "" if entry["n_users"] is None else f" ({entry['n_users']} users)"
            comparisons.append([
                row["label"],
                m,
                _fmt_percent(entry["improvement"]),
                f"{_fmt(entry['t_p'], '.3g')} ({n_paired} seed{'' if n_paired == 1 else 's'})",
                f"{_fmt(entry['wilcoxon_p'], '.3g')}{users}",
            ])
    ref_label = _cell(reference["label"])
    comparison = _table(
        ["Model", "Metric", f"{ref_label} vs model (relative)", "t-test p", "Wilcoxon p"],
        ["---", "---", "---:", "---:", "---:"],
        comparisons,
    )
    return f"{text}\n\nReference **{ref_label}** compared with each other model:\n\n{comparison}"


def _csv_value(value):
    """A CSV cell: ``""`` for None, lists space-separated, floats at full precision."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _write_rows(path, header, rows):
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([[_csv_value(v) for v in row] for row in rows])

    atomic_write(path, write)


def write_csv(path, summary, metrics):
    """Write the summary as CSV, one row per label, with a header row.

    Columns: ``label, model, reference, n_seeds, seeds, paired_seeds``, then for each metric
    ``m`` the columns ``<m>_mean, <m>_std, <m>_improvement, <m>_t_p, <m>_wilcoxon_p,
    <m>_n_users``, then ``epochs_mean, train_seconds_per_epoch_median,
    train_seconds_per_epoch_min, train_seconds_per_epoch_max``. Seed lists are
    space-separated, floats are written at full precision (``repr``, so they read back
    equal), ``nan`` as ``nan`` and values that do not apply (the reference's comparison with
    itself) as empty cells.
    """
    header = ["label", "model", "reference", "n_seeds", "seeds", "paired_seeds"]
    header += [f"{m}_{key}" for m in metrics for key in METRIC_COLUMNS]
    header += ["epochs_mean", *_time_columns()]
    rows = []
    for row in summary:
        values = [row["label"], row["model"], row["reference"], row["n_seeds"], row["seeds"], row["paired_seeds"]]
        values += [row["metrics"][m][key] for m in metrics for key in METRIC_COLUMNS]
        values += [row["epochs_mean"], *[row[column] for column in _time_columns()]]
        rows.append(values)
    _write_rows(path, header, rows)


def write_runs_csv(path, records, metrics):
    """Write one CSV row per run record, with a header row.

    Columns: ``label, model, seed, run_id, epochs, train_seconds_per_epoch``, then one column
    per test metric, named by the metric: ``metrics`` first, then any other metric of the
    records' ``test_result`` in the order they first appear. Missing values are empty cells.
    """
    columns = list(metrics)
    for record in records:
        columns += [m for m in (record.get("test_result") or {}) if m not in columns]
    fields = ["label", "model", "seed", "run_id", "epochs", "train_seconds_per_epoch"]
    rows = []
    for record in records:
        test = record.get("test_result") or {}
        rows.append([record.get(k) for k in fields] + [test.get(m) for m in columns])
    _write_rows(path, fields + columns, rows)


def plot_png(path, summary, metrics, title):
    """Draw and save the comparison figure as PNG.

    Left panel: one group of bars per metric, one bar per label (in summary order), height
    the mean over seeds, error bars the sample std (none where it is ``nan``). Right panel:
    one bar per label, the median over seeds of the training seconds per epoch, its error bar
    from the fastest to the slowest seed (asymmetric, never below zero).

    Drawn on a figure of its own with the Agg canvas: no window opens and pyplot's global
    state is left alone.

    Returns:
        matplotlib.figure.Figure: the figure, ``axes[0]`` the metrics and ``axes[1]`` the
        training time; the ``i``-th ``BarContainer`` of ``axes[0].containers`` holds label
        ``i``'s bars, one per metric.
    """
    # imported here so that importing the package does not load matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [row["label"] for row in summary]
    n_labels = len(labels)
    legend_rows = -(-n_labels // 4)
    # long variant labels overlap when slanted: set them upright and make room below the bars
    longest = max((len(label) for label in labels), default=0)
    upright = longest > 16
    label_room = 0.06 * longest if upright else 0.0
    fig = Figure(figsize=(max(8.0, 2.0 + 1.2 * len(metrics) + 0.6 * n_labels),
                          4.5 + 0.25 * legend_rows + label_room))
    FigureCanvasAgg(fig)
    ax_metrics, ax_time = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(2, len(metrics)), 1.5]})

    def errors(stds):
        return [0.0 if _missing(s) else s for s in stds]

    # one distinct colour per model, the same in both panels (the default cycle repeats after 10)
    from matplotlib import colormaps

    palette = colormaps["tab10" if n_labels <= 10 else "tab20"]
    colors = [palette(i % palette.N) for i in range(n_labels)]
    x = np.arange(len(metrics))
    width = 0.8 / max(n_labels, 1)
    for i, row in enumerate(summary):
        means = [row["metrics"][m]["mean"] for m in metrics]
        stds = [row["metrics"][m]["std"] for m in metrics]
        ax_metrics.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=errors(stds), capsize=3 if n_labels <= 8 else 1,
                       color=colors[i], label=f"{row['label']} (ref)" if row["reference"] else row["label"])
    ax_metrics.set_xticks(x, metrics)
    ax_metrics.set_ylabel("test value (mean ± std over seeds)")
    # below the bars, never over them
    ax_metrics.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.08),
                      ncol=min(n_labels, 4), frameon=False)

    positions = np.arange(n_labels)
    median, low, high = ([row[column] for row in summary] for column in _time_columns())
    below = errors([m - lo for m, lo in zip(median, low)])
    above = errors([hi - m for m, hi in zip(median, high)])
    ax_time.bar(positions, median, 0.6, yerr=[below, above], capsize=3, color=colors)
    rotation, align = (90, "center") if upright else (30, "right")
    ax_time.set_xticks(positions, labels, rotation=rotation, ha=align, fontsize="small")
    ax_time.set_ylabel("training s/epoch (median, min–max over seeds)")

    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return fig


def write_report(records, metrics, out_dir, title, reference=None, failures=()):
    """Summarize ``records`` and write the Markdown page, both CSVs and the PNG into ``out_dir``.

    Args:
        records (list of dict): run records (see :mod:`recbole_gtc.study`).
        metrics (list of str): the metrics to report.
        out_dir (str): the folder, created if missing (``~`` and ``$VARS`` expanded).
        title (str): the page's and the figure's title.
        reference (str, optional): the label compared against the others (default: the first).
        failures (list of dict, optional): runs that failed (``label``, ``seed``, ``error``),
            listed under "Failed runs" and left out of every number.

    Returns:
        dict: ``markdown`` (the page's text) and the paths ``md``, ``csv``, ``runs_csv``,
        ``png``; also ``summary``, the rows of
        :func:`~recbole_gtc.study.stats.summarize`.

    Raises:
        RecboleGTCError: from :func:`~recbole_gtc.study.stats.summarize`, or ``out_dir``
        cannot be created or written.
    """
    summary = summarize(records, metrics, reference=reference)
    out_dir = check_output_dir(out_dir, "report folder")
    paths = {
        "md": os.path.join(out_dir, MARKDOWN_FILE),
        "csv": os.path.join(out_dir, CSV_FILE),
        "runs_csv": os.path.join(out_dir, RUNS_CSV_FILE),
        "png": os.path.join(out_dir, PNG_FILE),
    }
    lines = [f"# {title}", ""]
    datasets = list(dict.fromkeys(r.get("dataset") for r in records if r.get("dataset")))
    if datasets:
        lines += [f"Dataset: {', '.join(datasets)}.", ""]
    lines += [
        WHAT_THE_NUMBERS_ARE,
        "",
        f"Reference model: **{_cell(_reference(summary)['label'])}**.",
        "",
        TESTS_USED,
        "",
        markdown_table(summary, metrics),
        "",
    ]
    if failures:
        lines += [f"## Failed runs ({len(failures)})", "",
                  "Left out of every number above; each run's run.log and run.json say more.", "",
                  "| model | seed | error |", "|---|---|---|"]
        lines += [f"| {_cell(f['label'])} | {f['seed']} | {_cell(f['error'])} |" for f in failures]
        lines.append("")
    markdown = "\n".join(lines)

    def write_markdown(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(markdown)

    atomic_write(paths["md"], write_markdown)
    write_csv(paths["csv"], summary, metrics)
    write_runs_csv(paths["runs_csv"], records, metrics)
    plot_png(paths["png"], summary, metrics, title)
    return {"markdown": markdown, **paths, "summary": summary}
