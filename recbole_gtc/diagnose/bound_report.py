"""The TC-bound tightness study as files: ``python -m recbole_gtc.diagnose tc-bound [--out DIR]``.

Runs :func:`recbole_gtc.evaluator.tc_bound.bound_study` and writes ``tc_bound.csv`` (every
number at full precision), ``tc_bound.md`` (the table) and ``tc_bound.png`` (one panel per
batch size: the true TC, the true pairwise-MI sum, ``log n`` and the four estimates against
the dependence strength rho).
"""

import os

import numpy as np

from recbole_gtc.diagnose import progress
from recbole_gtc.diagnose.figures import fmt, new_figure, save_png, table, write_csv, write_text
from recbole_gtc.evaluator.tc_bound import bound_study
from recbole_gtc.utils.files import check_output_dir

ESTIMATES = ("symile_optimal", "symile_gtc", "pairwise_optimal", "pairwise_gtc")
LABELS = {
    "symile_optimal": "Symile bound, optimal critic",
    "symile_gtc": "Symile bound, GTC's critic s<a, b*c>",
    "pairwise_optimal": "pairwise InfoNCE sum, optimal critic",
    "pairwise_gtc": "pairwise InfoNCE sum, GTC's critic s<a, b>",
}


def bound_markdown(rows):
    """The study as a Markdown table, one row per (rho, n)."""
    head = ["rho", "n", "true TC", "true pairwise-MI sum", "log n", *[LABELS[k] for k in ESTIMATES]]
    body = []
    for r in rows:
        cells = [fmt(r["rho"], ".2f"), r["n"], fmt(r["tc_true"], ".3f"), fmt(r["pairwise_mi_true"], ".3f"),
                 fmt(r["log_n"], ".3f")]
        cells += [f"{fmt(r[k], '.3f')} ± {fmt(r[k + '_se'], '.3f')}" for k in ESTIMATES]
        body.append(cells)
    return table(head, body)


def write_bound_report(out_dir, rhos=(0.1, 0.3, 0.5, 0.7, 0.9), batch_sizes=(64, 256, 1024, 2048), n_views=3, dim=8,
                       repeats=5, seed=0):
    """Run the study and write its CSV, Markdown and PNG into ``out_dir``; returns the paths and rows."""
    out_dir = check_output_dir(out_dir, "--out")
    rows = bound_study(rhos, batch_sizes, n_views, dim, repeats, seed,
                       progress=lambda i, total, rho, n: progress(f"[{i}/{total}] rho={rho} n={n}"))
    paths = {k: os.path.join(out_dir, f"tc_bound.{k}") for k in ("csv", "md", "png")}
    write_csv(paths["csv"], rows)
    text = "\n".join([
        "# How tight is the total-correlation bound? Planted Gaussian views",
        "",
        f"{n_views} views of width {dim}, every pair of views correlated rho per coordinate "
        "(recbole_gtc/evaluator/tc_bound.py; docs/diagnostics.md). Estimates are `log n - cross-entropy` "
        f"(nats), mean ± standard error over {repeats} independent samples of n rows; GTC's critics use "
        "L2-normalised views and a scale fitted on a separate sample. A Symile bound is a lower bound on "
        "the true TC (in expectation) and never exceeds log n; the pairwise sum estimates the sum of the "
        "pairs' mutual information, a different quantity.",
        "",
        bound_markdown(rows),
        "",
    ])
    write_text(paths["md"], text)
    _plot(paths["png"], rows, batch_sizes)
    progress(f"wrote {paths['md']}")
    return {**paths, "rows": rows, "markdown": text}


def _plot(path, rows, batch_sizes):
    fig, axes = new_figure(1, len(batch_sizes), width=4.2, height=4.0)
    for ax, n in zip(axes[0], batch_sizes):
        sub = sorted((r for r in rows if r["n"] == n), key=lambda r: r["rho"])
        rho = [r["rho"] for r in sub]
        ax.plot(rho, [r["tc_true"] for r in sub], color="black", linewidth=2, label="true TC")
        ax.plot(rho, [r["pairwise_mi_true"] for r in sub], color="grey", linestyle=":", label="true pairwise-MI sum")
        ax.axhline(np.log(n), color="grey", linestyle="--", linewidth=1, label="log n")
        for key in ESTIMATES:
            ax.errorbar(rho, [r[key] for r in sub], yerr=[r[key + "_se"] for r in sub], marker="o", markersize=3,
                        capsize=2, label=LABELS[key])
        ax.set_title(f"n = {n}")
        ax.set_xlabel("rho (dependence)")
        ax.set_ylabel("nats")
    axes[0][0].legend(fontsize="x-small")
    save_png(fig, path)
