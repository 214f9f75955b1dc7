"""Comparison studies: models x seeds on one dataset, with statistics and a results page.

    recbole-gtc --model="GTC,GTC[use_tc=False],LightGCN" --dataset=synth-mm --seeds=5

Modules:

* :mod:`~recbole_gtc.study.spec`: model specs (``GTC[use_tc=False]``) and seeds;
* :mod:`~recbole_gtc.study.cache`: finished runs stored under a hash of their
  configuration and dataset files, so a comparison never re-runs them;
* :mod:`~recbole_gtc.study.compare`: the loop over specs x seeds;
* :mod:`~recbole_gtc.study.stats`: mean +- std, paired t-test over seeds, per-user
  Wilcoxon over the pooled seeds, relative improvement, the training time's median and range;
* :mod:`~recbole_gtc.study.report`: the Markdown and CSV tables and the PNG;
* :mod:`~recbole_gtc.study.tune`: hyper-parameter search on validation (the grid walk,
  distinct random draws, hyperopt's TPE) over RecBole's grid files.

A *run record* (one model spec, one seed) is a plain dict:

* ``label`` (str): the spec as the user wrote it, e.g. ``"GTC[use_tc=False]"``;
* ``model`` (str), ``dataset`` (str), ``seed`` (int), ``run_id`` (str);
* ``valid_result`` / ``test_result`` (dict metric -> float): best validation epoch,
  and test at that epoch (RecBole's metric names, e.g. ``"recall@20"``);
* ``epochs`` (int or None), ``train_seconds_per_epoch`` (float or None: the median over
  the epochs after the first, :func:`recbole_gtc.quick_start.quick_start.seconds_per_epoch`);
* ``users`` (list of str): the test users' tokens, in a fixed order;
* ``per_user`` (dict metric -> numpy float array, shape ``[len(users)]``): each test
  user's value of the metric; its mean is ``test_result[metric]``.
"""

import sys

from recbole_gtc.utils.errors import RecboleGTCError

#: What ends one run of a study (or one tuning trial) as failed while the others go on: the
#: package's errors (a diverging run, a refused split), RecBole's and torch's (``ValueError``,
#: ``RuntimeError``: e.g. CUDA out of memory), arithmetic and memory errors. Anything else (a
#: ``TypeError``, an ``AssertionError``: a bug) stops the study with its traceback; a full
#: disk and a Ctrl-C stop it with one line.
RUN_FAILURES = (RecboleGTCError, ValueError, RuntimeError, ArithmeticError, MemoryError)


def progress(line):
    """Print one progress line of a study or a search on stderr, flushed at once.

    stderr, so that stdout carries only results (the tables); flushed, so that the line
    shows before the minutes of training that follow it, also when stderr is a file.
    """
    print(line, file=sys.stderr, flush=True)
