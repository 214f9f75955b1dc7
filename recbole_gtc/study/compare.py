"""The comparison loop: every model spec with every seed on one dataset, then the report.

    recbole-gtc --model="GTC,GTC[use_tc=False],DRAGON,LightGCN" --dataset=synth-mm --seeds=5

Every run uses the same split, sampler, evaluation protocol and evaluator (the dataset's
configuration); only the model, its variant overrides and the seed differ. Runs go seed
by seed (all specs with the first seed, then the second, ...), so an interrupted study
already has every model at some seeds. Finished runs are stored in a
:class:`~recbole_gtc.study.cache.RunCache` and never trained again; a run interrupted
half-way is continued from its ``last.pth`` (the ``--resume`` machinery of
:mod:`recbole_gtc.trainer.run`), so a killed comparison, started again with the same command,
ends with the numbers an uninterrupted one would have given.
"""

import logging
import os
import time

from recbole_gtc.data.features import first_line
from recbole_gtc.evaluator.groups import profiles_from_files
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.study import RUN_FAILURES, progress
from recbole_gtc.study.cache import RunCache
from recbole_gtc.study.report import write_report
from recbole_gtc.study.spec import parse_seeds, parse_specs
from recbole_gtc.study.tune import safe_label, tune
from recbole_gtc.trainer import run as run_module
from recbole_gtc.trainer.run import fingerprint, resumable_run
from recbole_gtc.utils.errors import DiskFullError, Interrupted, RecboleGTCError, stop_words, was_terminated
from recbole_gtc.utils.files import expand_path

#: Metrics of the tables and the significance tests (RecBole names).
DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _progress(message):
    progress(f"[study] {message}")


def study_dir(results_dir, dataset):
    return os.path.join(results_dir, dataset)


def plan(model_text, dataset, seeds_text, config_files=None, cmd_args=None, tuned_files=None):
    """Every (spec, seed) of the study with its loaded configuration, checked before anything trains.

    Args:
        model_text (str): ``--model``, e.g. ``"GTC,GTC[use_tc=False],LightGCN"``.
        dataset (str): the dataset.
        seeds_text (str): ``--seeds`` (a count from the configured ``seed``, or a list).
        config_files (list of str, optional): the user's YAML files.
        cmd_args (list of str, optional): the user's ``--key=value`` overrides.
        tuned_files (dict, optional): label -> YAML of tuned hyper-parameters, appended to
            that spec's configuration files.

    Returns:
        list of ``(spec, seed, config)``, seed-major.

    Raises:
        RecboleGTCError: a bad spec, seed list or configuration (the first one found).
    """

    cmd_args = user_args = list(cmd_args or [])
    if any(arg.startswith("--seed=") for arg in cmd_args) and "," in str(seeds_text):
        raise RecboleGTCError("--seed and a list of --seeds: give the seeds in one place "
                              "(--seed=S --seeds=N runs S .. S+N-1)")
    cmd_args = [arg for arg in cmd_args if not arg.startswith("--seed=")]
    specs = parse_specs(model_text)
    base = load_config(specs[0].model, dataset, config_files, cmd_args=list(user_args) + specs[0].cmd_args())
    seeds = parse_seeds(seeds_text, base["seed"])
    runs = []
    for seed in seeds:
        for spec in specs:
            files = list(config_files or []) + ([tuned_files[spec.label]] if tuned_files and spec.label in tuned_files else [])
            args = cmd_args + spec.cmd_args() + [f"--seed={seed}"]
            runs.append((spec, seed, load_config(spec.model, dataset, files or None, cmd_args=args)))
    return runs


def run_study(model_text, dataset, seeds_text, config_files=None, cmd_args=None, results_dir="results",
              saved=True, tune=False, tune_algo="exhaustive", max_evals=None, hyper_dir=None,
              metrics=DEFAULT_METRICS, report_only=False):
    """Train every spec with every seed (or take it from the cache), then write the report.

    Args:
        model_text, dataset, seeds_text, config_files, cmd_args: see :func:`plan`.
        results_dir (str): the report goes to ``<results_dir>/<dataset>/`` (``comparison.md``,
            ``comparison.csv``, ``runs.csv``, ``comparison.png``), finished runs to its ``runs/``
            and tuned hyper-parameters to its ``tuned/``.
        saved (bool): must be ``True``: every run is tested at its best-validation epoch
            (the cache is keyed by configuration, so last-epoch results would be reported
            as best-epoch ones).
        tune (bool): first search each spec's hyper-parameters on validation
            (:mod:`recbole_gtc.study.tune`) and use the best configuration.
        tune_algo (str), max_evals (int): the search (``exhaustive``: every grid point).
        hyper_dir (str, optional): folder of the grids ``<MODEL>.hyper`` (default: the
            package's ``properties/hyper``).
        metrics (tuple of str): metrics of the tables and tests.
        report_only (bool): train nothing; write the report from the finished runs in the
            cache (those not finished yet are listed on stderr and left out). With ``tune``:
            search nothing either; the runs are those of the tuned settings already under
            ``tuned/`` (a spec without any is an error).

    Returns:
        dict: ``records`` (list of run records), ``report`` (see
        :func:`recbole_gtc.study.report.write_report`) and ``failures`` (``label``, ``seed``,
        ``error`` of every run that failed: recorded, listed in the report, not cached, so the
        next start of the study tries it again; a full disk or a Ctrl-C stops the study instead).
    """

    if not saved:
        raise RecboleGTCError("--saved=False and --seeds: a study tests every run at its best validation epoch")
    out_dir = study_dir(results_dir, dataset)
    cache = RunCache(os.path.join(out_dir, "runs"))
    previous_hint = run_module.RESUME_HINT
    # a Ctrl-C or a full disk in any run of the study: the study continues it when started again
    run_module.RESUME_HINT = "run the same study command again to continue (finished runs are stored, not retrained)"
    try:
        return _run_study(model_text, dataset, seeds_text, config_files, cmd_args, out_dir, cache, saved, tune,
                          tune_algo, max_evals, hyper_dir, metrics, report_only)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(f"interrupted ({stop_words(exc)}); the study's finished runs are stored in "
                          f"{cache.folder}: {run_module.RESUME_HINT}", terminated=was_terminated(exc)) from None
    finally:
        run_module.RESUME_HINT = previous_hint


def _run_study(model_text, dataset, seeds_text, config_files, cmd_args, out_dir, cache, saved, tune, tune_algo,
               max_evals, hyper_dir, metrics, report_only):

    if tune and report_only:
        tuned_files = _tuned_found(model_text, out_dir)
    elif tune:
        tuned_files = _tune_all(model_text, dataset, config_files, cmd_args, out_dir, tune_algo, max_evals, hyper_dir)
    else:
        tuned_files = None
    runs = plan(model_text, dataset, seeds_text, config_files, cmd_args, tuned_files)
    for metric in metrics:
        name, _, k = metric.partition("@")
        config = runs[0][2]
        if name not in [m.lower() for m in config["metrics"]] or int(k or 0) not in config["topk"]:
            raise RecboleGTCError(f"study metric {metric}: not among the configured metrics/topk "
                                  f"({config['metrics']} at {config['topk']})")

    keys = [fingerprint(config) for _, _, config in runs]
    todo = sum(cache.get(key) is None for key in keys)
    _progress(f"{dataset}: {len(runs)} runs ({len(runs) // len(set(s for _, s, _ in runs))} models x "
              f"{len(set(s for _, s, _ in runs))} seeds), {len(runs) - todo} already done, {todo} to train")
    records, failures = [], []
    previous_level = run_module.CONSOLE_LEVEL
    run_module.CONSOLE_LEVEL = logging.WARNING  # the study prints its own progress
    try:
        done = 0
        for i, ((spec, seed, config), key) in enumerate(zip(runs, keys), 1):
            record = cache.get(key, label=spec.label)
            if record is not None:
                _progress(f"[{i}/{len(runs)}] {spec.label} seed {seed}: done before ({record['run_id']})")
                records.append(record)
                continue
            if report_only:
                _progress(f"[{i}/{len(runs)}] {spec.label} seed {seed}: not finished, left out of the report")
                continue
            resume_dir = resumable_run(config, saved=saved)
            _progress(f"[{i}/{len(runs)}] {spec.label} seed {seed}: "
                      + (f"continuing {os.path.basename(resume_dir)}" if resume_dir else "training")
                      + f" ({todo - done} to train)")
            start = time.perf_counter()
            try:
                result = run_recbole_gtc(spec.model, dataset, saved=saved, resume=resume_dir, config=config)
            except DiskFullError:
                raise  # every later run would fail alike: stop, resumable
            except RUN_FAILURES as err:  # e.g. a diverging variant: recorded, and the study goes on
                done += 1
                text = first_line(err) if isinstance(err, RecboleGTCError) else f"{type(err).__name__}: {first_line(err)}"
                failures.append({"label": spec.label, "seed": seed, "error": text})
                _progress(f"[{i}/{len(runs)}] {spec.label} seed {seed}: FAILED: {text}")
                continue
            done += 1
            record = {
                "label": spec.label, "model": spec.model, "dataset": dataset, "seed": seed,
                "run_id": result["run_id"], "run_dir": result["run_dir"], "fingerprint": key,
                "eval_protocol": result["eval_protocol"], "valid_result": result["best_valid_result"],
                "test_result": result["test_result"], "epochs": result["epochs"],
                "train_seconds_per_epoch": result["train_seconds_per_epoch"],
                "users": result["users"], "per_user": result["per_user"],
            }
            cache.put(key, record)
            records.append(cache.get(key, label=spec.label))
            shown = " ".join(f"{m}={record['test_result'].get(m, float('nan')):.4f}" for m in metrics[:2])
            _progress(f"[{i}/{len(runs)}] {spec.label} seed {seed}: test {shown}, {record['epochs']} epochs, "
                      f"{time.perf_counter() - start:.0f} s")
    finally:
        run_module.CONSOLE_LEVEL = previous_level
    failed = _failures_text(failures)
    if not records:
        raise RecboleGTCError(f"{cache.folder}: no finished run of this study to report{failed}")
    reference = runs[0][0].label
    if not any(record["label"] == reference for record in records):
        # (--report_only) another model would silently become the reference of every test
        raise RecboleGTCError(f"{reference}: the first model, the reference of the tables, has no finished run "
                              f"yet{failed}")
    title = f"{dataset}: {len(set(r['label'] for r in records))} models x {len(set(r['seed'] for r in records))} seeds"
    report = write_report(records, list(metrics), out_dir, title=title, failures=failures,
                          profiles=dataset_profiles(runs[0][2]))
    return {"records": records, "report": report, "failures": failures}


def _failures_text(failures):
    if not failures:
        return ""
    first = failures[0]
    return (f" ({len(failures)} run(s) failed, e.g. {first['label']} seed {first['seed']}: {first['error']})")


def dataset_profiles(config):
    """The users' profiles (training activity, test-item popularity) of a benchmark dataset's
    split files, for the report's per-group tables; ``None`` for a dataset split by RecBole
    (no split files: the split is the runs' own)."""
    splits = config["benchmark_filename"]
    if not splits:
        return None
    return profiles_from_files(config["data_path"], config["dataset"], config["USER_ID_FIELD"],
                               config["ITEM_ID_FIELD"], splits=(splits[0], splits[-1]))


def _tuned_found(model_text, out_dir):
    """label -> the tuned YAML an earlier ``--tune`` wrote for it (for ``--report_only --tune``)."""

    found = {}
    for spec in parse_specs(model_text):
        path = os.path.join(out_dir, "tuned", f"{safe_label(spec.label)}.yaml")
        if not os.path.isfile(path):
            raise RecboleGTCError(f"{path}: no tuned settings for {spec.label} (run the study with --tune first)")
        found[spec.label] = path
    return found


def _tune_all(model_text, dataset, config_files, cmd_args, out_dir, algo, max_evals, hyper_dir=None):
    """Search each spec's grid on validation; label -> YAML of its best hyper-parameters."""

    tuned = {}
    for spec in parse_specs(model_text):
        params_file = None
        if hyper_dir is not None:
            params_file = os.path.join(expand_path(hyper_dir), f"{spec.model}.hyper")
            if not os.path.isfile(params_file):
                raise RecboleGTCError(f"{params_file}: no grid for {spec.model} in --hyper_dir")
        result = tune(spec.label, spec.model, dataset, config_files=config_files, params_file=params_file,
                      config_dict=spec.config_dict(), cmd_args=list(cmd_args or []), algo=algo,
                      max_evals=max_evals, out_dir=os.path.join(out_dir, "tuned"),
                      # a whole grid is searched: an early stop would pick by the grid's file order
                      early_stop=None if algo == "exhaustive" else 10)
        _progress(f"tuned {spec.label}: {result['best_params']} (valid {result['best_valid_score']:.4f}"
                  + (", cached" if result.get("cached") else "") + ")")
        tuned[spec.label] = result["yaml"]
    return tuned
