"""The command line: ``recbole-gtc``, ``python -m recbole_gtc`` and ``run_recbole_gtc.py``.

    recbole-gtc --model=GTC --dataset=baby
    recbole-gtc --model=GTC,LightGCN,BPR --dataset=synth-mm --epochs=50
    recbole-gtc --model=LightGCN --config_files="a.yaml b.yaml" --learning_rate=0.002

Flags mirror RecBole's run_recbole.py; any other ``--key=value`` overrides that config key.
"""

import argparse
import inspect
import os
import sys
import textwrap

import recbole
import recbole.model.general_recommender as general
import torch
import yaml
from recbole.model.abstract_recommender import GeneralRecommender

from recbole_gtc.config.configurator import parse_override
from recbole_gtc.data.utils import check_model_type
from recbole_gtc.quick_start.distributed import PEER_TIMEOUT, distributed_settings, run_distributed
from recbole_gtc.quick_start.quick_start import comparison_table, load_config, run_recbole_gtc
from recbole_gtc.quick_start.recommend import build_parser as recommend_parser
from recbole_gtc.quick_start.recommend import main as recommend_main
from recbole_gtc.study.compare import run_study
from recbole_gtc.trainer.run import RUN_FILE
from recbole_gtc.utils.compat import quiet_library_warnings
from recbole_gtc.utils.errors import Interrupted, RecboleGTCError, sigterm_as_interrupt, stop_status, stop_words
from recbole_gtc.utils.utils import _PLUGIN_MODELS, PROPERTIES_DIR, get_model

#: Overrides listed by ``--help``: key, where its default comes from (``overall``: the
#: package's properties/overall.yaml, ``GTC``: GTC's model YAML, ``recbole``: RecBole's own
#: defaults; other layers are described in words by _defaults_epilog) and what it does.
COMMON_KEYS = (
    ("epochs", "overall", "most training epochs"),
    ("learning_rate", "overall", "the optimizer's step size"),
    ("train_batch_size", "overall", "training batch size"),
    ("stopping_step", "overall", "evaluations without a better valid score before stopping"),
    ("seed", "overall", "random seed (same seed, same numbers on CPU)"),
    ("eval_protocol", "dataset YAML", "mmrec or recbole"),
    ("checkpoint_dir", "overall", "where each run writes its folder"),
    ("use_gpu", "cuda", "train on the GPU"),
    ("show_progress", "overall", "True: tqdm bars per epoch; False: one log line per epoch"),
    ("state", "recbole", "log level: DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ("data_path", "data_path", "the folder holding the dataset's folder"),
    ("embedding_size", "GTC", "embedding dimension d"),
    ("tc_weight", "GTC", "weight of the total-correlation loss"),
    ("diff_weight", "GTC", "weight of the diffusion loss"),
    ("noise_steps", "GTC", "diffusion steps T"),
    ("use_diffusion", "GTC", "ablation switch: the diffusion filter"),
    ("use_tc", "GTC", "ablation switch: the total-correlation loss"),
    ("use_gate", "GTC", "ablation switch: the similarity gate"),
    ("train_denoiser", "GTC", "False: the denoisers keep their initial weights"),
    ("diffusion_condition", "GTC", "the filter's condition: item (released code) or users (the paper's reading)"),
    ("diagnostics", "overall", "True: per-epoch diagnostics (balance, filter, TC bound) in run.json"),
    ("knn_k", "GTC", "neighbours per item in the item-item kNN graphs"),
    ("graph_cache_dir", "GTC", "on-disk cache of GTC's graphs (None: no cache)"),
)

#: Defaults that no YAML holds, in words.
_WORDED_DEFAULTS = {
    "dataset YAML": "the dataset's YAML, else recbole",
    "data_path": "./dataset if it holds the dataset, else the bundled datasets",
}


def _yaml_layers():
    """The YAML defaults COMMON_KEYS names: layer -> {key: value} (empty when unreadable)."""

    files = {
        "overall": os.path.join(PROPERTIES_DIR, "overall.yaml"),
        "GTC": os.path.join(PROPERTIES_DIR, "model", "GTC.yaml"),
        "recbole": os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml"),
    }
    layers = {}
    for name, path in files.items():
        try:
            with open(path) as handle:
                layers[name] = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError):
            layers[name] = {}
    return layers


def _default_text(key, layer, layers):
    if layer in _WORDED_DEFAULTS:
        return _WORDED_DEFAULTS[layer]
    if layer == "cuda":  # the YAML's True means "when CUDA is available"; say what it means here

        return f"auto: True with CUDA, else False (here: {torch.cuda.is_available()})"
    default = layers.get(layer, {}).get(key, "-")
    default = "~ (off)" if default is None else default
    if layer == "GTC":
        return f"{default} (GTC)"
    if key in layers.get("GTC", {}):
        return f"{default}, GTC: {layers['GTC'][key]}"
    return str(default)


def _listing(name, text, indent=26):
    """``name`` and ``text`` as --help lists options: ``text`` from column ``indent``, wrapped."""
    return textwrap.fill(text, width=100, initial_indent=f"  {name}".ljust(indent),
                         subsequent_indent=" " * indent, break_on_hyphens=False)


def _defaults_epilog():
    layers = _yaml_layers()
    lines = ["common --KEY=VALUE overrides: what each does [its default]"]
    for key, layer, meaning in COMMON_KEYS:
        lines.append(_listing(f"--{key}=...", f"{meaning} [{_default_text(key, layer, layers)}]"))
    lines += [
        "",
        "Any RecBole or model key works the same way (see properties/overall.yaml,",
        "properties/model/<MODEL>.yaml and RecBole's documentation for the full list).",
        "Configuration order, later wins: package defaults < model YAML < dataset YAML",
        "< --config_files < --KEY=VALUE.",
        "Each run writes only under <checkpoint_dir>/<run id>/: run.log, best.pth, and run.json",
        "(its configuration and, once finished, its result: best valid and test metrics, epochs,",
        "seconds per epoch).",
    ]
    return "\n".join(lines)


#: The modes of the command, shown at the top of --help.
DESCRIPTION = """\
Train and test recommenders on multi-modal datasets: GTC, the multi-modal baselines and
RecBole's general recommenders, on RecBole 1.2.1. Run as recbole-gtc, python -m recbole_gtc
or python run_recbole_gtc.py; every mode takes --KEY=VALUE overrides (listed at the end).

  train and test one model     recbole-gtc --model=GTC --dataset=ml-100k-mm
  compare models (one seed)    recbole-gtc --model=GTC,LightGCN,BPR --dataset=synth-mm
  comparison study             add --seeds=N (options: "comparison study" below)
  multi-process training       add --nproc=N (options: "multi-process training" below)
  recommend from a checkpoint  --recommend (options: "recommendations from a checkpoint" below)
  import or build a dataset    python -m recbole_gtc.prepare --help"""


def _model_help():
    """Every model --model accepts: this package's, then RecBole's general recommenders."""

    recbole_models = sorted(
        (name for name, cls in vars(general).items()
         if inspect.isclass(cls) and issubclass(cls, GeneralRecommender) and cls is not GeneralRecommender),
        key=str.lower,
    )
    return (f"{', '.join(_PLUGIN_MODELS)} (multi-modal: GTC and its baselines) or one of RecBole's general "
            f"recommenders: {', '.join(recbole_models)}; several comma-separated for a comparison "
            "(default: %(default)s)")


def _recommend_options():
    """The options of ``--recommend`` (recbole_gtc.quick_start.recommend's parser), one line each, for --help."""

    lines = []
    for action in recommend_parser()._actions:
        if action.dest in ("help", "recommend"):
            continue
        flag = " ".join(filter(None, [action.option_strings[0], action.metavar]))
        lines.append(_listing(flag, action.help % {"default": action.default}, indent=24))
    return "\n".join(lines)


def _bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="recbole-gtc", description=DESCRIPTION, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_defaults_epilog(),
    )
    parser.add_argument("--model", "-m", default="GTC", help=_model_help())
    parser.add_argument("--dataset", "-d", default="ml-100k-mm",
                        help="the dataset's name: its folder under data_path (a path goes to --data_path=DIR, "
                             "the folder holding it; default: %(default)s)")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files, later ones win")
    parser.add_argument("--saved", type=_bool, default=True, metavar="True|False",
                        help="keep the best checkpoint and test it (default: True); False tests the last "
                             "epoch and keeps no checkpoint")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                        help="continue an interrupted run of the same configuration: the latest one under "
                             "checkpoint_dir, or the run folder given")
    study = parser.add_argument_group(
        "comparison study", "train every model (variants as MODEL[key=value,...]) with every seed, "
        "then write mean +- std tables, significance tests and a PNG under RESULTS_DIR/<dataset>/")
    study.add_argument("--seeds", default=None, metavar="N|S1,S2,..",
                       help="a count (from the configured seed on) or a list of seeds; turns on the study")
    study.add_argument("--results_dir", default=None, metavar="DIR",
                       help="where the study writes (default: results); finished runs are cached there")
    study.add_argument("--tune", action="store_true",
                       help="first search each model's grid (properties/hyper/<MODEL>.hyper) on validation "
                            "and compare the best configurations")
    study.add_argument("--tune_algo", default="exhaustive", choices=("exhaustive", "random", "bayes"),
                       help="search algorithm of --tune: every grid point, distinct random draws, or hyperopt's TPE "
                            "(default: %(default)s)")
    study.add_argument("--max_evals", type=int, default=None, metavar="N",
                       help="most trials per model for --tune (default: the whole grid)")
    study.add_argument("--report_only", action="store_true",
                       help="train nothing: write the tables from the study's finished runs (the others are listed); "
                            "with --tune, of the tuned study (its settings from RESULTS_DIR/<dataset>/tuned/)")
    study.add_argument("--hyper_dir", default=None, metavar="DIR",
                       help="folder of the --tune grids <MODEL>.hyper (default: the package's properties/hyper)")
    dist = parser.add_argument_group(
        "multi-process training", "RecBole's distributed flags (torch.distributed: gloo on CPU, nccl on GPU); "
        "each process trains on its share of every batch and gradients are averaged")
    dist.add_argument("--nproc", type=int, default=1, metavar="N",
                      help="processes on this machine (default: %(default)s)")
    dist.add_argument("--world_size", type=int, default=-1, metavar="N",
                      help="processes on all machines (default: -1, i.e. --nproc)")
    dist.add_argument("--ip", default="localhost", help="address of the machine with rank 0 (default: %(default)s)")
    dist.add_argument("--port", type=int, default=5678, help="its free TCP port (default: %(default)s)")
    dist.add_argument("--group_offset", type=int, default=0, metavar="N",
                      help="global rank of this machine's first process (default: %(default)s)")
    dist.add_argument("--peer_timeout", type=float, default=PEER_TIMEOUT, metavar="SECONDS",
                      help="how long every process waits for all --world_size processes to join before it gives "
                           "up with an error (default: %(default)g)")
    recommend = parser.add_argument_group(
        "recommendations from a checkpoint",
        "nothing trains: top-K items per user from a trained run, as CSV (recbole-gtc --recommend --help)\n"
        + _recommend_options())
    recommend.add_argument("--recommend", action="store_true",
                           help="recommend with the options above instead of training")
    return parser


def parse_args(argv):
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)

    for arg in overrides:  # malformed overrides fail before anything is loaded
        try:
            parse_override(arg)
        except RecboleGTCError as err:
            parser.error(str(err))
    return args, overrides


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)

    with sigterm_as_interrupt():  # a SIGTERM (kill, a scheduler) stops a run as Ctrl-C does: resumable
        if "--recommend" in argv:  # top-K items from a trained checkpoint (recbole_gtc.quick_start.recommend)
            return recommend_main(argv)
        args, overrides = parse_args(argv)
        try:
            with quiet_library_warnings():
                return _main(args, overrides)
        except RecboleGTCError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:  # Interrupted says what was kept and how to continue
            message = str(exc) if isinstance(exc, Interrupted) else \
                f"interrupted ({stop_words(exc)}) before a run started training: nothing to resume"
            print(f"error: {message}", file=sys.stderr)
            return stop_status(exc)


def _main(args, overrides):
    settings = distributed_settings(args.nproc, args.world_size, args.ip, args.port, args.group_offset,
                                    args.peer_timeout)
    if args.seeds is not None or args.tune or args.results_dir is not None or args.report_only:
        if settings is not None:
            raise RecboleGTCError("--nproc/--world_size: a comparison study trains in one process")
        return _study(args, overrides)
    if settings is not None and args.resume is not None:
        raise RecboleGTCError("--resume continues a one-process run; it cannot be combined with --nproc/--world_size")
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if any("[" in m for m in models):
        raise RecboleGTCError("--model: variants (MODEL[key=value]) are for a comparison study: add --seeds")
    if not models:
        raise RecboleGTCError("--model: no model named")
    if args.resume is not None and len(models) > 1:
        raise RecboleGTCError("--resume continues one run: name a single model")
    config_files = args.config_files.split() if args.config_files else None
    # Every model's name, type and configuration is checked before anything trains.
    configs = []
    for model in models:
        check_model_type(model, get_model(model).type)
    for model in models:
        configs.append(load_config(model, args.dataset, config_files, cmd_args=overrides))
    results = []
    for model, config in zip(models, configs):
        if settings is not None:
            result = run_distributed(model, args.dataset, settings, config_files, overrides, saved=args.saved)
            if result is None:  # another machine holds global rank 0 and reports
                print(f"ranks {args.group_offset}..{args.group_offset + args.nproc - 1} of {model} done", flush=True)
                continue
        else:
            result = run_recbole_gtc(model, args.dataset, saved=args.saved, resume=args.resume, config=config)
        print(f"best valid: {result['best_valid_result']}")
        print(f"test: {result['test_result']}")
        print(f"written: {os.path.join(result['run_dir'], RUN_FILE)} (these results and the configuration, as JSON)")
        print(result["summary"], flush=True)
        results.append(result)
    if len(results) > 1:
        print(f"\nComparison on {args.dataset} (protocol={results[0]['eval_protocol']}, test at best validation epoch):")
        print(comparison_table(results))
    return 0


def _study(args, overrides):
    if args.resume is not None:
        raise RecboleGTCError("--resume and --seeds: a study continues by itself; run the same command again")
    if (args.hyper_dir is not None or args.tune_algo != "exhaustive" or args.max_evals is not None) and not args.tune:
        raise RecboleGTCError("--hyper_dir, --tune_algo and --max_evals set up --tune: add --tune")
    if args.max_evals is not None and args.max_evals < 1:
        raise RecboleGTCError(f"--max_evals={args.max_evals}: must be at least 1")
    config_files = args.config_files.split() if args.config_files else None
    outcome = run_study(args.model, args.dataset, args.seeds or "1", config_files, overrides,
                        results_dir=args.results_dir or "results", saved=args.saved, tune=args.tune,
                        tune_algo=args.tune_algo, max_evals=args.max_evals, hyper_dir=args.hyper_dir,
                        report_only=args.report_only)
    report = outcome["report"]
    print(report["markdown"])
    print(f"\nwritten: {report['md']}, {report['csv']}, {report['runs_csv']}, {report['png']}", flush=True)
    for failure in outcome["failures"]:
        print(f"warning: {failure['label']} seed {failure['seed']} failed: {failure['error']}", file=sys.stderr)
    # 1: the report is written but leaves runs out (2 is kept for "nothing was done")
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
