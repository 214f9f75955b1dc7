"""Why a model wins or loses: diagnostics of a finished run and the TC-bound study.

    python -m recbole_gtc.diagnose run RUN_DIR [--out DIR] [--data_path DIR]
    python -m recbole_gtc.diagnose tc-bound [--out DIR] [--rhos ...] [--batch-sizes ...]

* :mod:`~recbole_gtc.diagnose.run_report`: for one run folder (its ``best.pth``, ``run.json``,
  ``test_per_user.npz``): test metrics per user group, the filter (reconstruction error, linear
  probes of raw / projected / filtered features), user-awareness on planted data, modality
  balance (per epoch when the run had ``diagnostics: True``), the TC bound over training;
* :mod:`~recbole_gtc.diagnose.bound_report`: the Gaussian tightness study of
  :mod:`recbole_gtc.evaluator.tc_bound`.

Each writes Markdown, CSV and a PNG; docs/diagnostics.md says what every number is.
"""

import sys


def progress(line):
    """One ``[diagnose]`` progress line on stderr, flushed (stdout carries the report's path)."""
    print(f"[diagnose] {line}", file=sys.stderr, flush=True)
