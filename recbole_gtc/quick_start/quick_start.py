"""Train and evaluate one or several models on one dataset (the runner's library API)."""

import os
import statistics
import sys
from logging import getLogger

import torch
from recbole.utils import init_seed, set_color

from recbole_gtc.config.configurator import MMConfig
from recbole_gtc.config.validation import check_against_dataset, validate_config
from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.data.features import first_line
from recbole_gtc.data.utils import check_dataset_files
from recbole_gtc.evaluator.groups import group_table, user_profiles, write_group_csv
from recbole_gtc.trainer.run import Run, init_run_logger, save_per_user
from recbole_gtc.trainer.trainer import build_trainer, get_trainer
from recbole_gtc.utils.errors import DiskFullError, Interrupted, RecboleGTCError, stop_words, was_terminated
from recbole_gtc.utils.files import check_output_dir, expand_path, is_disk_full
from recbole_gtc.utils.kernels import check as check_kernels
from recbole_gtc.utils.kernels import describe as describe_kernels
from recbole_gtc.utils.utils import get_model

SUMMARY_METRICS = ("recall@20", "ndcg@20")


def load_config(model, dataset, config_file_list=None, config_dict=None, cmd_args=None, distributed=None):
    """The run's configuration, checked before anything is printed or trained.

    Errors come first: a bad value, a missing or malformed dataset folder or feature
    file raises :class:`~recbole_gtc.utils.errors.RecboleGTCError` here, before the logger
    prints RecBole's long configuration dump. ``distributed`` (one rank's keys, see
    :mod:`recbole_gtc.quick_start.distributed`) makes the configuration join the process group.
    """
    check_kernels()  # a bad RECBOLE_GTC_CPU_KERNELS, before anything is printed
    check_dataset_name(dataset)
    config = MMConfig(model, dataset, config_file_list, config_dict, cmd_args=cmd_args or [],
                      distributed=distributed)
    check_dataset_name(dataset, config["data_path"])
    validate_config(config)  # unknown keys and bad values (recbole_gtc.config.validation)
    check_dataset_files(config)
    for key in ("checkpoint_dir", "graph_cache_dir"):
        if config[key]:
            check_output_dir(config[key], key)
    return config


def check_dataset_name(dataset, found_at=None):
    """``dataset`` is a folder's name under ``data_path`` (RecBole names the files inside after
    it), so a path in its place, or the name of a folder here that is not under ``data_path``
    (``found_at``: where the configuration looks), is one line saying which two flags to give."""
    text = str(dataset)
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    if any(sep in text for sep in separators) or text.startswith("~") or text in (".", ".."):
        why = "a path, not a dataset name"
    elif found_at is not None and not os.path.isdir(found_at) and os.path.isdir(text):
        why = f"not found under data_path {os.path.dirname(found_at)}, but ./{text} is a folder here"
    else:
        return
    folder = os.path.abspath(expand_path(text))
    raise RecboleGTCError(f"--dataset={text}: {why}; --dataset takes the dataset's name and --data_path the "
                          f"folder that holds it: --data_path={os.path.dirname(folder)} "
                          f"--dataset={os.path.basename(folder)}")


def run_recbole_gtc(model, dataset, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
                    resume=None, config=None, test=True):
    """Train ``model`` on ``dataset`` with early stopping on validation, then test the best epoch.

    Mirrors :func:`recbole.quick_start.run_recbole`, with :class:`MMConfig`'s cascade,
    multi-modal datasets, the evaluation protocol and recbole-gtc models. The run writes
    only under its own folder ``<checkpoint_dir>/<run_id>/`` (see :mod:`recbole_gtc.trainer.run`).

    Args:
        model (str): GTC or a RecBole general recommender (BPR, LightGCN, ...).
        dataset (str): folder name under ``data_path``.
        config_file_list (list of str, optional): YAML files, later ones win.
        config_dict (dict, optional): overrides.
        saved (bool): keep the best checkpoint and test it (else test the last epoch
            and keep no checkpoint).
        cmd_args (list of str, optional): ``--key=value`` overrides (``None``: none).
        resume (None, True or str): continue an interrupted run of the same configuration
            (``True``: the latest one under ``checkpoint_dir``; a path: that run folder).
        config (Config, optional): an already loaded :func:`load_config` result.
        test (bool): evaluate the test split at the end (``False`` for hyper-parameter
            search, which must never look at test: ``test_result`` is then ``{}``).

    Returns:
        dict: ``model``, ``dataset``, ``eval_protocol``, ``run_id``, ``run_dir``,
        ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``
        (metric -> value), ``epochs``, ``epoch_seconds`` (each training epoch's wall-clock
        seconds), ``train_seconds_per_epoch`` (:func:`seconds_per_epoch`; None when the
        trainer does not time epochs), ``users`` and ``per_user`` (the test
        users' tokens and each one's metric values, see :mod:`recbole_gtc.evaluator.per_user`;
        ``None`` without a full-ranking test), ``test_groups`` (the test metrics per user group,
        :func:`~recbole_gtc.evaluator.groups.group_table`; ``None`` likewise), ``diagnostics``
        (``diagnostics: True``: one dict per epoch; else ``None``) and ``summary`` (one line).
    """
    if config is None:
        config = load_config(model, dataset, config_file_list, config_dict, cmd_args)
    run = Run.start(config, resume=resume, saved=saved)
    try:
        result = _train_and_test(config, run, saved, test)
        run.finish(keep_best=saved)
    except BaseException as exc:
        error = end_of_run(run, exc)
        if error is exc:
            raise
        raise error from None
    finally:
        run.release()
    return result


def end_of_run(run, exc):
    """Record why ``run`` ended early and return the exception to raise (``raise end_of_run(...)``).

    * Ctrl-C or SIGTERM: the checkpoints stay, ``run.json`` says ``interrupted``; an :class:`Interrupted`
      whose one line says what was kept and how to continue.
    * A full disk (wherever it was hit): the same, as a :class:`DiskFullError` naming the folder.
    * A refused resume (nothing trained yet): the interrupted run is left as it was.
    * Anything else: the run failed; its checkpoints are removed and ``run.json`` and
      ``run.log`` say why.
    """
    if isinstance(exc, KeyboardInterrupt) or is_disk_full(exc):
        kept = run.kept_text()
        if isinstance(exc, KeyboardInterrupt):
            then = f"{kept}: {run.resume_text()}" if kept else "no epoch was saved yet: nothing to resume"
            message = f"interrupted ({stop_words(exc)}) in {run.dir}; {then}"
            run.interrupt(message)
            return Interrupted(message, terminated=was_terminated(exc))
        then = (f"{kept}: free space, then {run.resume_text()}" if kept
                else "no epoch was saved yet: free space and start the run again")
        reason = str(exc) if isinstance(exc, DiskFullError) else f"{run.dir}: no space left on device"
        message = f"{reason}; {then}"
        run.interrupt(message)
        return DiskFullError(message, getattr(exc, "path", None))
    if run.resume_file and not run.training_started:
        run.log_error(f"error: {first_line(exc)}")
        return exc
    run.fail(first_line(exc) if isinstance(exc, RecboleGTCError) else f"{type(exc).__name__}: {first_line(exc)}")
    return exc


def _train_and_test(config, run, saved, test=True, after_fit=None):
    init_seed(config["seed"], config["reproducibility"])
    use_deterministic_kernels(config)
    init_run_logger(config, run.log_file)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    logger.info(f"run {run.run_id}: {run.dir}")
    if config["device"].type == "cpu":
        logger.info(describe_kernels())

    dataset_obj = create_dataset(config)
    logger.info(dataset_obj)
    check_against_dataset(config, dataset_obj)  # e.g. topk above the item count, before training
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)

    init_seed(config["seed"], config["reproducibility"])
    model_obj = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    logger.info(model_obj)

    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = build_trainer(trainer_class, config, model_obj, run, train_data)
    if not config["single_spec"]:
        # RecBole's rule (seed + rank) for what each rank draws while training (negatives,
        # diffusion noise), so the ranks' shares are independent; the model's initial weights
        # and its per-epoch graph draws (graphs.epoch_generator) stay the same on every rank.
        init_seed(config["seed"] + torch.distributed.get_rank(), config["reproducibility"])
    if run.resume_file:
        trainer.resume(run.resume_file)
    run.training_started = True
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    if after_fit is not None:
        after_fit(trainer)
    test_result, per_user, groups = {}, None, None
    if test:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        per_user = trainer.per_user_result(test_data.dataset)
        if per_user is not None:
            save_per_user(run.per_user_file, *per_user)
            groups = group_table(*per_user, split_profiles(train_data.dataset, test_data.dataset))
            write_group_csv(run.groups_file, groups)

    logger.info(set_color("best valid ", "yellow") + f": {dict(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {dict(test_result)}")
    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "eval_protocol": config["eval_protocol"],
        "run_id": run.run_id,
        "run_dir": run.dir,
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result),
        "test_result": dict(test_result),
        # RecBole's own trainers (e.g. TraditionalTrainer for ItemKNN) do not time epochs.
        "epochs": len(trainer.train_loss_dict) if trainer.train_loss_dict else None,
        "epoch_seconds": list(getattr(trainer, "epoch_seconds", [])),
        # each test user's metric values (a full-ranking test): for per-user significance tests
        "users": per_user[0] if per_user else None,
        "per_user": per_user[1] if per_user else None,
        # the test metrics per user group (activity and test-item popularity quintiles)
        "test_groups": groups,
        # diagnostics: True: one dict per training epoch (the model's diagnostics and their seconds)
        "diagnostics": getattr(trainer, "epoch_diagnostics", None),
    }
    result["train_seconds_per_epoch"] = seconds_per_epoch(result["epoch_seconds"])
    result["summary"] = summary_line(result)
    run.set_result(result)  # run.json's "result", written when the run finishes
    return result


#: cuBLAS's workspace setting for reproducible results (NVIDIA's cuBLAS documentation, "Results
#: reproducibility"; torch's deterministic mode warns without it).
CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_kernels(config):
    """Torch's deterministic kernels when ``reproducibility`` is on, off otherwise.

    RecBole's ``init_seed`` only pins cuDNN. On CPU the backward of advanced indexing
    (index_put with accumulate) is multi-threaded and not bitwise reproducible, so the same
    seed could give different numbers; torch's deterministic kernels fix it. On CUDA cuBLAS
    is deterministic only with ``CUBLAS_WORKSPACE_CONFIG`` set before its first use, so a CUDA
    run sets it (unless the environment already does); a CPU run, and importing the package,
    leave the environment alone.
    """
    deterministic = bool(config["reproducibility"])
    if deterministic and torch.device(config["device"]).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def split_profiles(train_dataset, test_dataset):
    """:func:`~recbole_gtc.evaluator.groups.user_profiles` of a run's training and test splits
    (RecBole datasets), by external token."""
    def tokens(dataset):
        users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())
        return users, items

    return user_profiles(*tokens(train_dataset), *tokens(test_dataset))


def steady_epochs(epoch_seconds):
    """The epochs that time training itself: every one after the first, which also pays one-off
    costs (lazy initialisation, first-touch allocations, caches filling up). A run of one epoch
    has only that one, and it stands for itself."""
    return list(epoch_seconds[1:] or epoch_seconds)


def seconds_per_epoch(epoch_seconds):
    """The median training seconds of :func:`steady_epochs`; None when no epoch was timed."""
    steady = steady_epochs(epoch_seconds)
    return statistics.median(steady) if steady else None


def summary_line(result):
    """One line: model, dataset, protocol and test Recall@20 / NDCG@20."""
    metrics = " ".join(f"{m}={result['test_result'].get(m, float('nan')):.4f}" for m in SUMMARY_METRICS)
    return (
        f"SUMMARY model={result['model']} dataset={result['dataset']} "
        f"protocol={result['eval_protocol']} test {metrics} run={result['run_id']}"
    )


def comparison_table(results, metrics=("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20", "map@20")):
    """Markdown table, one row per model: epochs run, training seconds per epoch (median and
    min-max over :func:`steady_epochs`; ratios between rows are meaningful, absolute seconds
    are machine noise; ``-`` where the trainer does not time epochs), validation Recall@20 and
    test metrics at the best validation epoch."""
    header = ("| model | epochs | train s/epoch: median (min-max) | valid recall@20 | "
              + " | ".join(f"test {m}" for m in metrics) + " |")
    lines = [header, "|" + "---|" * (len(metrics) + 4)]
    for r in results:
        cells = [f"{r['test_result'].get(m, float('nan')):.4f}" for m in metrics]
        steady = steady_epochs(r.get("epoch_seconds") or [])
        seconds = f"{statistics.median(steady):.3f} ({min(steady):.3f}-{max(steady):.3f})" if steady else "-"
        lines.append(
            f"| {r['model']} | {'-' if r['epochs'] is None else r['epochs']} | {seconds} | "
            f"{r['best_valid_result'].get('recall@20', float('nan')):.4f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)
