"""The results of a comparison study as files: a Markdown page, two CSV tables and a PNG.

:func:`write_report` writes, into one folder,

* ``comparison.md``: what the numbers are, the reference model, the tests, a table of
  mean +- std per model and a table of the reference's comparison with every other model;
* ``comparison.csv``: one row per model with every number of the summary;
* ``runs.csv``: one row per run (model spec x seed);
* ``comparison.png``: test metrics (grouped bars) and training seconds per epoch (median over
  seeds, the bar's range from the fastest to the slowest seed), and, when the users' profiles
  are given, a disparity panel: Recall@20 per user-activity quintile, one line per model;
* ``groups.csv`` (with the profiles): every model's test metrics per user group
  (:mod:`recbole_gtc.evaluator.groups`), mean and std over seeds.

Every file is written through :func:`recbole_gtc.utils.files.atomic_write`. The summary rows are
those of :func:`recbole_gtc.study.stats.summarize`.
"""

import csv
import math
import os

import numpy as np

from recbole_gtc.evaluator.groups import GROUPINGS, group_table
from recbole_gtc.study.stats import TIME_STATS, mean_std, paired_ttest, summarize
from recbole_gtc.utils.files import atomic_write, check_output_dir

MARKDOWN_FILE = "comparison.md"
CSV_FILE = "comparison.csv"
RUNS_CSV_FILE = "runs.csv"
PNG_FILE = "comparison.png"
GROUPS_CSV_FILE = "groups.csv"
#: The metric of the group table and the disparity panel.
GROUP_METRIC = "recall@20"

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


def plot_png(path, summary, metrics, title, groups=None):
    """Draw and save the comparison figure as PNG.

    Left panel: one group of bars per metric, one bar per label (in summary order), height
    the mean over seeds, error bars the sample std (none where it is ``nan``). Right panel:
    one bar per label, the median over seeds of the training seconds per epoch, its error bar
    from the fastest to the slowest seed (asymmetric, never below zero).

    With ``groups`` (:func:`group_summary` rows), a third panel: each label's
    :data:`GROUP_METRIC` per user-activity quintile (mean over seeds), one line per label.

    Drawn on a figure of its own with the Agg canvas: no window opens and pyplot's global
    state is left alone.

    Returns:
        matplotlib.figure.Figure: the figure, ``axes[0]`` the metrics and ``axes[1]`` the
        training time (``axes[2]`` the disparity panel); the ``i``-th ``BarContainer`` of
        ``axes[0].containers`` holds label ``i``'s bars, one per metric.
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
    with_groups = bool(groups)
    fig = Figure(figsize=(max(8.0, 2.0 + 1.2 * len(metrics) + 0.6 * n_labels) + (5.0 if with_groups else 0.0),
                          4.5 + 0.25 * legend_rows + label_room))
    FigureCanvasAgg(fig)
    ratios = [max(2, len(metrics)), 1.5] + ([2.0] if with_groups else [])
    axes = fig.subplots(1, len(ratios), gridspec_kw={"width_ratios": ratios})
    ax_metrics, ax_time = axes[0], axes[1]

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

    if with_groups:
        ax_groups = axes[2]
        for i, label in enumerate(labels):
            rows = [g for g in groups if g["label"] == label and g["grouping"] == "activity"]
            if rows:
                ax_groups.plot([g["group"] for g in rows], [g[f"{GROUP_METRIC}_mean"] for g in rows], marker="o",
                               color=colors[i], label=label)
        ax_groups.set_xlabel("user activity quintile (training interactions; Q1 least active)")
        ax_groups.set_ylabel(f"test {GROUP_METRIC} (mean over seeds)")
        ax_groups.set_title("who gains: disparity across users", fontsize="medium")

    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return fig


def group_summary(records, profiles, metrics, reference=None):
    """Each label's test metrics per user group, mean and sample std over its seeds, and the
    paired t-test over seeds of each group's mean against the reference's.

    Args:
        records (list of dict): run records with ``users`` and ``per_user``.
        profiles (dict): :func:`~recbole_gtc.evaluator.groups.user_profiles` of the dataset.
        metrics (list of str): the metrics.
        reference (str, optional): the reference label (default: the first record's).

    Returns:
        list of dict: one row per (label, grouping, group): ``label``, ``grouping``, ``group``,
        ``low``, ``high``, ``n_users``, ``n_seeds``, then ``<metric>_mean``, ``<metric>_std`` and
        ``<metric>_t_p`` (two-sided paired t-test over the seeds both ran, the group's mean of
        this label against the reference's; ``nan`` for the reference itself or fewer than 2
        seeds). Records without per-user values are left out.
    """
    tables = {}
    for record in records:
        if not record.get("per_user"):
            continue
        available = [m for m in metrics if m in record["per_user"]]
        for row in group_table(record["users"], record["per_user"], profiles, available):
            key = (record["label"], row["grouping"], row["group"])
            tables.setdefault(key, {})[record.get("seed")] = row
    labels = list(dict.fromkeys(r["label"] for r in records))
    reference = reference or (labels[0] if labels else None)
    out = []
    for (label, grouping, group), by_seed in tables.items():
        rows = list(by_seed.values())
        entry = {"label": label, "grouping": grouping, "group": group, "low": rows[0]["low"],
                 "high": rows[0]["high"], "n_users": rows[0]["n_users"], "n_seeds": len(rows)}
        ref = tables.get((reference, grouping, group), {})
        seeds = [s for s in by_seed if s in ref]
        for m in metrics:
            mean, std = mean_std([r[m] for r in rows if m in r])
            entry[f"{m}_mean"], entry[f"{m}_std"] = mean, std
            entry[f"{m}_t_p"] = (paired_ttest([ref[s][m] for s in seeds], [by_seed[s][m] for s in seeds])
                                 if label != reference else math.nan)
        out.append(entry)
    order = {g: i for i, g in enumerate(GROUPINGS)}
    out.sort(key=lambda r: (labels.index(r["label"]), order[r["grouping"]], r["group"]))
    return out


def group_markdown(groups, reference, metric=GROUP_METRIC):
    """One table per grouping: a row per label, a column per group (``metric``'s mean over
    seeds), then each other label's relative difference to the reference in the group."""
    parts = []
    labels = list(dict.fromkeys(g["label"] for g in groups))
    for grouping, what in GROUPINGS.items():
        rows = [g for g in groups if g["grouping"] == grouping]
        names = list(dict.fromkeys(g["group"] for g in rows))
        if not names:
            continue
        cell = {(g["label"], g["group"]): g for g in rows}
        ranges = {g["group"]: (g["low"], g["high"], g["n_users"]) for g in rows}
        header = ["Model"] + [f"{n} ({_fmt(ranges[n][0], '.3g')}–{_fmt(ranges[n][1], '.3g')}; {ranges[n][2]} users)"
                              for n in names]
        body = [[label] + [_fmt(cell[(label, n)][f"{metric}_mean"], ".4f") if (label, n) in cell else "n/a"
                           for n in names] for label in labels]
        ref = [cell.get((reference, n)) for n in names]
        for label in labels:
            if label == reference:
                continue
            diffs = []
            for n, r in zip(names, ref):
                c = cell.get((label, n))
                ok = c is not None and r is not None and c[f"{metric}_mean"] > 0
                diffs.append(f"{_fmt_percent((r[metric + '_mean'] - c[metric + '_mean']) / c[metric + '_mean'])} "
                             f"(p {_fmt(c[metric + '_t_p'], '.2g')})" if ok else "n/a")
            body.append([f"{reference} vs {label}"] + diffs)
        parts.append(f"Test {metric} by {what} (quintiles of the test users), mean over seeds; "
                     f"the last rows: the reference's relative difference to each model in the group "
                     f"(p: paired t-test over seeds of the group's mean).\n\n"
                     + _table(header, ["---"] + ["---:"] * len(names), body))
    return "\n\n".join(parts)


def write_report(records, metrics, out_dir, title, reference=None, failures=(), profiles=None):
    """Summarize ``records`` and write the Markdown page, both CSVs and the PNG into ``out_dir``.

    Args:
        records (list of dict): run records (see :mod:`recbole_gtc.study`).
        metrics (list of str): the metrics to report.
        out_dir (str): the folder, created if missing (``~`` and ``$VARS`` expanded).
        title (str): the page's and the figure's title.
        reference (str, optional): the label compared against the others (default: the first).
        failures (list of dict, optional): runs that failed (``label``, ``seed``, ``error``),
            listed under "Failed runs" and left out of every number.
        profiles (dict, optional): the users' profiles
            (:func:`~recbole_gtc.evaluator.groups.user_profiles`): adds the per-group tables
            ("Who gains"), ``groups.csv`` and the disparity panel.

    Returns:
        dict: ``markdown`` (the page's text) and the paths ``md``, ``csv``, ``runs_csv``,
        ``png`` (and ``groups_csv``); also ``summary``, the rows of
        :func:`~recbole_gtc.study.stats.summarize`, and ``groups`` (:func:`group_summary`).

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
    groups = group_summary(records, profiles, metrics, _reference(summary)["label"]) if profiles else []
    if groups:
        paths["groups_csv"] = os.path.join(out_dir, GROUPS_CSV_FILE)
        lines += ["## Who gains", "", group_markdown(groups, _reference(summary)["label"]), ""]
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
    if groups:
        header = list(groups[0])
        _write_rows(paths["groups_csv"], header, [[g[k] for k in header] for g in groups])
    plot_png(paths["png"], summary, metrics, title, groups=groups)
    return {"markdown": markdown, **paths, "summary": summary, "groups": groups}
