"""Hyper-parameter search on the validation split: RecBole's grid files, hyperopt's TPE.

    from recbole_gtc.study.tune import tune
    tune("GTC[use_tc=False]", "GTC", "synth-mm", config_dict={"use_tc": False})

Each trial trains one configuration through :func:`recbole_gtc.quick_start.quick_start.run_recbole_gtc`
with ``test=False``: the test split is never evaluated while searching, and the best
configuration is the one with the best validation score (``valid_metric``, ties: the
earlier trial). Every trial uses the same seed (the configuration's ``seed``), so a trial
reports exactly what a direct run of that configuration reports.

Grid (params) files use RecBole's format, one hyper-parameter a line::

    learning_rate choice [0.0001, 0.0005, 0.001]
    reg_weight loguniform -9,-4          # log-uniform in [e^-9, e^-4]; algo random or bayes only

plus ``#`` comments (RecBole's own parser refuses them). The package's grids are
``properties/hyper/<model>.hyper``. Grid files are data: the values of a ``choice`` line are
parsed as Python literals (:func:`parse_grid_line`), never evaluated, so a grid file from
someone else cannot run code (RecBole's parser passes them to ``eval``).

Precedence. A spec's fixed overrides (``config_dict``, e.g. ``use_tc=False``) define the
variant: a grid may not search them. Command-line ``--key=value`` overrides win over the
trial's values, so a grid key also given on the command line would search nothing: both
are refused with a :class:`~recbole_gtc.utils.errors.RecboleGTCError`.

Outputs, under ``out_dir`` (default ``results/<dataset>/tuned``), named by the *safe
label* (:func:`safe_label`: every character other than letters, digits and ``. _ = + -``
becomes ``_``, e.g. ``GTC[use_tc=False]`` -> ``GTC_use_tc=False_``):

* ``<safe label>.yaml``: the best hyper-parameters as a YAML mapping (usable as a
  ``--config_files`` layer), under a comment header with the label, model, dataset,
  metric, best validation score, date and the cache key;
* ``<safe label>.trials.csv``: one row per trial: its parameters, its epochs and its
  best-epoch validation metrics (``valid_<metric>``); no test column.

Cache. The cache key is the sha1 of the grid file's content, the model, the label, the
spec's overrides, the command-line overrides, the content of every config file, the
dataset name and files, the algorithm, ``max_evals`` and ``early_stop``. When the YAML's key
matches, :func:`tune` returns the stored result without training; any change re-runs.
A digest of the dataset's files is part of the key too (a rebuilt dataset is searched again).

Algorithms. Each is reproducible: the same configuration seed gives the same settings in
the same order.

* ``exhaustive``: :func:`grid_settings`, the grid's settings in :func:`itertools.product`
  order over the lines in file order (the last line varies fastest), each once. RecBole's own
  exhaustive search cannot run with hyperopt 0.3.0: RecBole 1.2.1 draws its samples with a
  ``numpy.random.RandomState``, which hyperopt >= 0.2.7 no longer accepts.
* ``random``: :func:`random_settings`, distinct settings drawn with the configuration's seed.
  On a grid of ``choice`` lines, a sample without replacement from the product; a
  ``max_evals`` above the grid's size tries every setting once, in random order (a note on
  stderr says so). With a continuous line, hyperopt's sampler draws and a setting drawn
  before is drawn again; only a space whose other lines are all ``quniform`` can run out of
  new settings, and the search then ends with fewer trials (a note says so).
* ``bayes``: hyperopt's TPE through ``hyperopt.fmin``, its ``rstate`` seeded with the
  configuration's seed. TPE may propose a setting it has tried: that trial is not trained
  again (same seed, same result) but counts toward ``max_evals``, as TPE's next proposal
  depends on its whole trial history.

``early_stop`` counts trials without a better score; hyperopt's ``no_progress_loss`` would
count the first trial as one of them.
"""

import ast
import contextlib
import csv
import datetime
import hashlib
import itertools
import json
import math
import os
import re
import sys

import numpy as np
import recbole
import torch
import yaml
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, hp, tpe
from hyperopt.pyll import rec_eval, stochastic

from recbole_gtc import __version__
from recbole_gtc.config.configurator import parse_override
from recbole_gtc.config.validation import check_values
from recbole_gtc.data.features import first_line
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.study import RUN_FAILURES, progress
from recbole_gtc.trainer.run import config_items, dataset_digest
from recbole_gtc.utils.errors import DiskFullError, RecboleGTCError
from recbole_gtc.utils.files import MAX_NAME_BYTES, atomic_write, check_output_dir, expand_path, to_plain
from recbole_gtc.utils.utils import PROPERTIES_DIR

ALGOS = ("exhaustive", "random", "bayes")
#: Longest safe label kept as is; longer ones are cut and get a hash suffix, so that
#: ``<label>.trials.csv`` plus atomic_write's temporary suffix fits MAX_NAME_BYTES.
_MAX_LABEL = MAX_NAME_BYTES - 40
#: Random search on a space with a continuous line gives up after this many draws in a row
#: that were all tried before: only a space of ``quniform`` and ``choice`` lines runs out of
#: new settings, and it has then (almost surely) none left.
_MAX_REDRAWS = 1000


def default_params_file(model):
    """``properties/hyper/<model>.hyper`` of the package."""
    return os.path.join(PROPERTIES_DIR, "hyper", f"{model}.hyper")


def safe_label(label):
    """A file-name form of a spec label: characters other than ASCII letters, digits and
    ``. _ = + -`` become ``_`` (``GTC[use_tc=False]`` -> ``GTC_use_tc=False_``); a leading
    ``.`` too (no hidden files); labels longer than 160 characters are cut and get the
    first 8 hex digits of their sha1."""
    if not str(label).strip():
        raise RecboleGTCError("tune: the label is empty")
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", str(label))
    safe = "_" + safe[1:] if safe.startswith(".") else safe
    if len(safe) > _MAX_LABEL:
        safe = safe[:_MAX_LABEL - 9] + "_" + hashlib.sha1(str(label).encode()).hexdigest()[:8]
    return safe


# --------------------------------------------------------------------------- grid files

def _strip_comment(line):
    """The line without a ``#`` comment (whole line, or after whitespace)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s#", line, maxsplit=1)[0].rstrip()


#: The line types of RecBole's grid format and how many numbers each continuous one takes.
_CONTINUOUS = {"uniform": 2, "quniform": 3, "loguniform": 2}


def parse_grid_line(line):
    """One line of a grid file, ``name type values``, as ``(name, hyperopt expression)``.

    RecBole's format and meaning (``HyperTuning._build_space_from_file``), read as data: the
    values of a ``choice`` line are a Python *literal* (a list or tuple of numbers, strings,
    booleans, ``None``, or lists, tuples and dicts of them), parsed with :func:`ast.literal_eval`.
    RecBole's parser passes them to ``eval``, so a grid file could run any code; here an
    expression (a call, a name, an operator) is refused. ``uniform``, ``quniform`` and
    ``loguniform`` take comma-separated numbers.

    Raises:
        ValueError: the line does not parse (the message says why).
    """

    parts = line.strip().split(None, 2)
    if len(parts) < 3:
        raise ValueError("it needs a name, a type and values")
    name, kind, text = parts
    if kind == "choice":
        try:
            values = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"the choice values {text.strip()!r} are not a literal list (numbers, strings, "
                             f"True/False/None, lists or dicts of them); grid files are data, never evaluated"
                             ) from None
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"the choice values must be a list, got {type(values).__name__}")
        return name, hp.choice(name, list(values))
    if kind in _CONTINUOUS:
        numbers = text.replace(" ", "").split(",")
        if len(numbers) != _CONTINUOUS[kind]:
            raise ValueError(f"{kind} takes {_CONTINUOUS[kind]} comma-separated numbers, got {text.strip()!r}")
        try:
            bounds = [float(n) for n in numbers]
        except ValueError:
            raise ValueError(f"{kind} takes numbers, got {text.strip()!r}") from None
        return name, getattr(hp, kind)(name, *bounds)
    raise ValueError(f"unknown type {kind!r}")


def load_space(params_file):
    """Parse a grid file in RecBole's format, values as literals (:func:`parse_grid_line`).

    Args:
        params_file (str): RecBole's format, ``#`` comments allowed.

    Returns:
        tuple: ``(space, grid)``: ``space`` (dict name -> hyperopt expression, in file
        order) for hyperopt; ``grid`` (dict name -> list of the values of a
        ``choice`` line, or ``None`` for a continuous line).

    Raises:
        RecboleGTCError: file missing or unreadable, a line that does not parse (named
        ``<file>:<line>``), or no hyper-parameter at all.
    """
    path = expand_path(params_file)
    if not os.path.isfile(path):
        raise RecboleGTCError(f"{path}: params file not found")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [_strip_comment(line) for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise RecboleGTCError(f"{path}: cannot be read ({err})") from None
    space = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            name, expr = parse_grid_line(line)
        except ValueError as err:
            raise RecboleGTCError(
                f"{path}:{number}: '{line.strip()}' is not 'name choice [v1, v2, ...]', 'name uniform low,high', "
                f"'name quniform low,high,q' or 'name loguniform low,high' ({err})"
            ) from None
        if name in space:
            raise RecboleGTCError(f"{path}:{number}: '{name}' is listed twice")
        space[name] = expr
    if not space:
        raise RecboleGTCError(f"{path}: no hyper-parameter lines (e.g. 'learning_rate choice [0.001, 0.0001]')")
    grid = {}
    for name, expr in space.items():
        if expr.name == "switch":  # hp.choice: switch(hyperopt_param(name, randint(n)), *options)
            options = [to_plain(rec_eval(option)) for option in expr.pos_args[1:]]
            if not options:
                raise RecboleGTCError(f"{path}: '{name}' has an empty choice list")
            grid[name] = options
        else:
            grid[name] = None
    return space, grid


def grid_size(grid):
    """Number of combinations of an all-``choice`` grid (``None`` if a line is continuous)."""
    if any(options is None for options in grid.values()):
        return None
    return math.prod(len(options) for options in grid.values())


def grid_settings(grid):
    """Every setting of an all-``choice`` grid once, as dicts name -> value: the
    :func:`itertools.product` of the lines in file order (the last line varies fastest)."""
    names = list(grid)
    return (dict(zip(names, values)) for values in itertools.product(*grid.values()))


def random_settings(space, grid, count, seed):
    """``count`` distinct settings drawn at random, reproducibly from ``seed``.

    An all-``choice`` grid is sampled without replacement: ``count`` distinct positions in
    the order of :func:`grid_settings`, so every setting is equally likely and none comes
    twice; a ``count`` above the grid's size gives every setting once, in random order.
    Otherwise hyperopt's sampler draws from ``space``, and a setting drawn before is drawn
    again (fewer than ``count`` when :data:`_MAX_REDRAWS` draws in a row repeat).

    Args:
        space (dict): name -> hyperopt expression, from :func:`load_space`.
        grid (dict): name -> choices or ``None``, from :func:`load_space`.
        count (int): settings wanted.
        seed (int): seeds a ``numpy.random.default_rng``.

    Returns:
        list of dict: name -> value (Python values), in draw order.
    """
    rng = np.random.default_rng(seed)
    size = grid_size(grid)
    if size is not None:
        positions = rng.choice(size, size=min(count, size), replace=False)
        # np.unravel_index numbers in C order (last axis fastest), as itertools.product does
        digits = np.unravel_index(positions, [len(options) for options in grid.values()])
        return [{name: grid[name][column[row]] for name, column in zip(grid, digits)}
                for row in range(len(positions))]

    settings, redraws = [], 0
    while len(settings) < count and redraws < _MAX_REDRAWS:
        setting = to_plain(stochastic.sample(space, rng=rng))
        if setting in settings:
            redraws += 1
        else:
            settings.append(setting)
            redraws = 0
    return settings


def _tpe_search(try_setting, space, count, seed, stalled):
    """hyperopt's TPE through ``fmin``, ``count`` trials at most: ``try_setting(params)``
    trains (or recalls) a setting and returns ``(validation score, bigger is better)``;
    ``stalled()`` ends the search early."""

    def loss(params):
        score, bigger = try_setting(params)
        if math.isnan(score):  # a failed trial (e.g. diverged): TPE learns nothing from it
            return {"status": STATUS_FAIL}
        # fmin minimises; the same loss RecBole's HyperTuning.trial gives it
        return {"loss": -score if bigger else score, "status": STATUS_OK}

    fmin(loss, space, algo=tpe.suggest, max_evals=count, trials=Trials(), rstate=np.random.default_rng(seed),
         early_stop_fn=lambda trials, *args: (stalled(), []), show_progressbar=False, return_argmin=False)


# --------------------------------------------------------------------------- checks

def _cmd_keys(cmd_args):
    return [parse_override(arg)[0] for arg in cmd_args or []]


def _check_grid_keys(path, grid, label, config_dict, cmd_args):
    for key in grid:
        if key in (config_dict or {}):
            raise RecboleGTCError(
                f"{path}: searches '{key}', which the spec {label} fixes to {config_dict[key]!r}; "
                f"remove it from the params file or from the spec"
            )
    cmd = _cmd_keys(cmd_args)
    for key in grid:
        if key in cmd:
            raise RecboleGTCError(
                f"--{key} on the command line fixes '{key}', which {path} searches (the search would try "
                f"nothing); drop it from the command line or from the params file"
            )


def _check_grid_values(path, grid, model, load):
    """Unknown keys and the first combination through a full config load; every choice
    value through the package's value rules; before any training."""

    first = {name: options[0] for name, options in grid.items() if options is not None}
    try:
        config = load(first)
    except RecboleGTCError as err:
        raise RecboleGTCError(f"{path}: {err}") from None
    for name, options in grid.items():
        for value in options or []:
            try:
                check_values({name: value}, model)
            except RecboleGTCError as err:
                raise RecboleGTCError(f"{path}: {err}") from None
    return config


# --------------------------------------------------------------------------- cache

def cache_key(params_text, model, label, config_dict, cmd_args, config_files, dataset, algo, max_evals,
              early_stop, dataset_digest=None, resolved=None):
    """sha1 (hex) of everything that decides a search's outcome (``dataset_digest``: of the
    dataset's files, :func:`recbole_gtc.trainer.run.dataset_digest`; ``resolved``: the search's base
    configuration after the whole cascade, :func:`recbole_gtc.trainer.run.config_items`, so a changed
    package or model default searches again), with the library versions."""

    files = []
    for path in config_files or []:
        path = expand_path(path)
        try:
            with open(path, "rb") as f:
                files.append(hashlib.sha1(f.read()).hexdigest())
        except OSError:
            files.append(None)  # load_config names the missing file
    payload = {
        "params": params_text, "model": model, "label": label, "config_dict": config_dict or {},
        "cmd_args": list(cmd_args or []), "config_files": files, "dataset": dataset, "algo": algo,
        "max_evals": max_evals, "early_stop": early_stop, "dataset_files": dataset_digest,
        "resolved": resolved, "versions": [__version__, recbole.__version__, torch.__version__],
    }
    if algo == "random":
        # Random search drew with replacement up to commit 9a38ae3 (a repeat counted as a trial):
        # a search stored by that code is not the one this code makes, so it is searched again.
        payload["draws"] = "distinct"
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()


def read_header(yaml_path):
    """``# key: value`` lines at the top of a tuned YAML, as a dict of strings."""
    header = {}
    with open(yaml_path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].strip().partition(": ")
            if sep:
                header[key] = value
    return header


def _cached(yaml_path, csv_path, key):
    if not (os.path.isfile(yaml_path) and os.path.isfile(csv_path)):
        return None
    try:
        header = read_header(yaml_path)
        if header.get("cache_key") != key:
            return None
        with open(yaml_path, encoding="utf-8") as f:
            best_params = yaml.safe_load(f)
        score = float(header["best_valid_score"])
        if not isinstance(best_params, dict) or not best_params or math.isnan(score):
            return None  # damaged (e.g. emptied): search again
        return best_params, score
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, ValueError):
        return None  # damaged: search again


# --------------------------------------------------------------------------- search

def best_trial(trials, bigger):
    """Index of the best trial by validation score (ties: the earliest; NaN never wins)."""
    best = None
    for i, trial in enumerate(trials):
        score = trial["best_valid_score"]
        if score is None or math.isnan(score):
            continue
        if best is None or (score > trials[best]["best_valid_score"] if bigger
                            else score < trials[best]["best_valid_score"]):
            best = i
    return best


def _no_better_for(count, trials, bigger):
    """True once the last ``count`` trials did not beat the best (never when ``count`` is None)."""
    best = best_trial(trials, bigger)
    return count is not None and best is not None and len(trials) - 1 - best >= count


def tune(label, model, dataset, config_files=None, config_dict=None, cmd_args=None, params_file=None,
         algo="exhaustive", max_evals=None, out_dir="results/<dataset>/tuned", early_stop=10):
    """Search ``model``'s grid on ``dataset``'s validation split; write and return the best.

    Args:
        label (str): the spec's name, e.g. ``"GTC[use_tc=False]"`` (names the outputs).
        model (str): the model class name.
        dataset (str): the dataset name.
        config_files (list of str, optional): YAML layers, as for ``load_config``.
        config_dict (dict, optional): the spec's fixed overrides (e.g. ``{"use_tc": False}``);
            the grid may not name them.
        cmd_args (list of str, optional): the user's ``--key=value`` overrides; the grid
            may not name them.
        params_file (str, optional): the grid; default ``properties/hyper/<model>.hyper``.
        algo (str): ``exhaustive`` (every combination, file order; ``choice`` lines only),
            ``random`` (distinct settings at random) or ``bayes`` (hyperopt's TPE); see the
            module docstring.
        max_evals (int, optional): trials at most. ``None``: as many as the grid has
            combinations (``random`` and ``bayes`` need it when a line is continuous). With
            ``exhaustive``, the first ``max_evals`` combinations; with ``random`` on a grid,
            never more than the grid's combinations.
        out_dir (str): output folder; ``<dataset>`` is replaced by the dataset name.
        early_stop (int or None): stop after this many trials in a row without a better
            validation score than the best so far (as RecBole's ``no_progress_loss`` means
            it, without its off-by-one); ``None`` never stops early. With ``exhaustive`` it
            cuts the rest of the grid.

    Returns:
        dict: ``label``, ``best_params`` (dict), ``best_valid_score`` (float),
        ``yaml`` and ``trials_csv`` (paths), ``cached`` (bool: read from a previous search).

    Raises:
        RecboleGTCError: no grid file for the model, a bad grid line, a grid key fixed by
        the spec or given on the command line, a bad value, a bad ``algo``/``max_evals``.
    """

    config_dict = dict(config_dict or {})
    cmd_args = list(cmd_args or [])
    if params_file is None:
        params_file = default_params_file(model)
        if not os.path.isfile(params_file):
            raise RecboleGTCError(
                f"{params_file}: no hyper-parameter grid for model {model}; write one in RecBole's format "
                f"(lines like 'learning_rate choice [0.001, 0.0001]') and pass its path as params_file"
            )
    path = expand_path(params_file)
    if algo not in ALGOS:
        raise RecboleGTCError(f"algo={algo!r}: use one of {', '.join(ALGOS)}")
    if max_evals is not None and (isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1):
        raise RecboleGTCError(f"max_evals={max_evals!r}: must be a positive integer")
    if early_stop is not None and (isinstance(early_stop, bool) or not isinstance(early_stop, int)
                                   or early_stop < 1):
        raise RecboleGTCError(f"early_stop={early_stop!r}: must be a positive integer or None")

    space, grid = load_space(path)
    _check_grid_keys(path, grid, label, config_dict, cmd_args)
    # A spec's overrides beat the user's --key=value, as in the comparison (recbole_gtc.study.spec):
    # GTC[knn_k=5] with --knn_k=10 searches and compares knn_k=5.
    cmd_args = [arg for arg in cmd_args if parse_override(arg)[0] not in (config_dict or {})]
    size = grid_size(grid)
    if size is None and algo == "exhaustive":
        raise RecboleGTCError(f"{path}: exhaustive search needs 'choice' lines only; use algo random or bayes")
    if size is None and max_evals is None:
        raise RecboleGTCError(f"{path}: a continuous line ('uniform', 'loguniform', ...) needs max_evals")
    # exhaustive and random try each combination at most once; TPE may propose one twice
    n_trials = (max_evals or size) if size is None or algo == "bayes" else min(size, max_evals or size)

    with open(path, encoding="utf-8") as f:
        params_text = f.read()

    base = load_config(model, dataset, config_files, config_dict=dict(config_dict or {}), cmd_args=list(cmd_args or []))
    key = cache_key(params_text, model, label, config_dict, cmd_args, config_files, dataset, algo, max_evals,
                    early_stop, dataset_digest(base["data_path"]), resolved=config_items(base))
    folder = check_output_dir(str(out_dir).replace("<dataset>", str(dataset)), "tuning output folder")
    name = safe_label(label)
    yaml_path = os.path.join(folder, f"{name}.yaml")
    csv_path = os.path.join(folder, f"{name}.trials.csv")
    result = {"label": label, "yaml": yaml_path, "trials_csv": csv_path}

    hit = _cached(yaml_path, csv_path, key)
    if hit is not None:
        progress(f"tune {label}: cached, same grid and configuration as {yaml_path} (delete it to search again)")
        return dict(result, best_params=hit[0], best_valid_score=hit[1], cached=True)

    def load(params):
        # the spec's overrides and the trial's values never share a key (checked above)
        return load_config(model, dataset, config_files, config_dict={**config_dict, **params}, cmd_args=cmd_args)

    base = _check_grid_values(path, grid, model, load)
    metric = str(base["valid_metric"]).lower()
    bigger = bool(base["valid_metric_bigger"])
    trials = []

    def try_setting(params):
        params = to_plain(params)
        for done in trials:  # TPE can propose a combination twice: same seed, same result
            if done["params"] == params:
                run = done
                break
        else:
            config = load(params)
            try:
                out = run_recbole_gtc(model, dataset, config=config, saved=False, test=False)
            except DiskFullError:
                raise  # every later trial would fail alike
            except RUN_FAILURES as err:  # e.g. a learning rate that diverges: that trial failed, the search goes on
                text = first_line(err) if isinstance(err, RecboleGTCError) else f"{type(err).__name__}: {first_line(err)}"
                run = {"params": params, "best_valid_score": float("nan"), "best_valid_result": {},
                       "epochs": None, "run_id": None, "error": text}
            else:
                run = {"params": params, "best_valid_score": float(out["best_valid_score"]),
                       "best_valid_result": {k: float(v) for k, v in out["best_valid_result"].items()},
                       "epochs": out["epochs"], "run_id": out["run_id"]}
        trials.append(dict(run, params=params))
        shown = f"FAILED: {run['error']}" if run.get("error") else f"valid {metric}={run['best_valid_score']:.4f}"
        progress(f"tune {label}: trial {len(trials)}/{n_trials} {params} {shown}")
        return run["best_valid_score"], bigger

    def stalled():
        return _no_better_for(early_stop, trials, bigger)

    seed = int(base["seed"])
    if algo == "exhaustive":
        settings = itertools.islice(grid_settings(grid), n_trials)
    elif algo == "random":
        settings = random_settings(space, grid, n_trials, seed)
        if len(settings) < (max_evals or 0):
            progress(f"tune {label}: random search tries {len(settings)} distinct settings, not max_evals={max_evals}: "
                     + (f"the grid has {size}" if size is not None else f"{_MAX_REDRAWS} draws in a row gave only settings drawn before"))
            n_trials = len(settings)
    # training writes RecBole's and hyperopt's notes to stdout, which stays for the study's results
    with contextlib.redirect_stdout(sys.stderr):
        if algo == "bayes":
            _tpe_search(try_setting, space, n_trials, seed, stalled)
        else:
            for params in settings:
                try_setting(params)
                if stalled():
                    break

    best = best_trial(trials, bigger)
    failed = [t for t in trials if t.get("error")]
    if best is None:
        why = f"; e.g. {failed[0]['params']}: {failed[0]['error']}" if failed else ""
        raise RecboleGTCError(f"tune {label}: no trial gave a validation score ({len(failed)} of {len(trials)} "
                              f"failed, the others NaN){why}")
    best_params = trials[best]["params"]
    best_score = trials[best]["best_valid_score"]
    _write_trials_csv(csv_path, grid, trials)
    _write_yaml(yaml_path, best_params, {
        "label": label, "model": model, "dataset": dataset, "valid_metric": metric,
        "best_valid_score": repr(best_score), "best_trial": f"{best + 1} of {len(trials)}",
        "algo": algo, "params_file": os.path.abspath(path),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cache_key": key,
    })
    progress(f"tune {label}: best {best_params} valid {metric}={best_score:.4f} -> {yaml_path}")
    return dict(result, best_params=best_params, best_valid_score=best_score, cached=False)


def _write_trials_csv(path, grid, trials):
    metrics = []
    for trial in trials:
        metrics += [m for m in trial["best_valid_result"] if m not in metrics]
    columns = ["trial", *grid, "epochs", "run_id", *(f"valid_{m}" for m in metrics)]
    failed = any(trial.get("error") for trial in trials)
    if failed:
        columns.append("error")

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for i, trial in enumerate(trials, 1):
                writer.writerow([i, *(trial["params"].get(k) for k in grid), trial["epochs"], trial["run_id"],
                                 *(repr(trial["best_valid_result"].get(m, float("nan"))) for m in metrics)]
                                + ([trial.get("error") or ""] if failed else []))

    atomic_write(path, write)


def _write_yaml(path, best_params, header):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("# best hyper-parameters on the validation split (recbole_gtc.study.tune)\n")
            for key, value in header.items():
                f.write(f"# {key}: {value}\n")
            f.write(yaml.safe_dump(best_params, sort_keys=False, default_flow_style=False))

    atomic_write(path, write)
