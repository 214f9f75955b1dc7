"""Shared file writers of the diagnose reports: CSV, Markdown tables, and a matplotlib figure
drawn on its own Agg canvas (no window, pyplot's global state untouched)."""

import csv
import math

from recbole_gtc.utils.files import atomic_write


def fmt(value, spec=".4f"):
    """A table cell: ``n/a`` for None or nan."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def table(header, rows):
    """A Markdown table (first column left-aligned, the rest right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path, rows, header=None):
    """Rows (dicts) as CSV; floats at full precision (``repr``), None as an empty cell."""
    header = header or (list(dict.fromkeys(k for row in rows for k in row)) if rows else [])

    def cell(value):
        if value is None:
            return ""
        return repr(float(value)) if isinstance(value, float) else value

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([cell(row.get(k)) for k in header])

    atomic_write(path, write)


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def new_figure(n_rows, n_cols, width=6.0, height=4.0):
    """A figure with an Agg canvas and its ``(n_rows, n_cols)`` axes (always a 2-D array)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols, height * n_rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def save_png(fig, path):
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def empty_panel(ax, title, why):
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize="small", transform=ax.transAxes)
    ax.set_axis_off()
