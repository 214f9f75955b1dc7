"""python -m recbole_gtc.prepare {mmrec,synthetic,movielens} ...

Write a dataset folder that the runner can train on, then print the command that trains
on it. Errors exit with status 2 and one line starting with "error:".
"""

import argparse
import os
import shlex
import sys

from recbole_gtc.prepare.mmrec import BUILD_SEED, check_dataset_name, import_mmrec
from recbole_gtc.prepare.movielens import DEFAULT_SEED
from recbole_gtc.prepare.movielens import NAME as MOVIELENS_NAME
from recbole_gtc.prepare.movielens import build_movielens
from recbole_gtc.prepare.synthetic import PRESETS, build_synthetic
from recbole_gtc.utils.errors import RecboleGTCError, sigterm_as_interrupt, stop_status, stop_words
from recbole_gtc.utils.utils import default_data_path


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser():
    parser = argparse.ArgumentParser(prog="python -m recbole_gtc.prepare", description=__doc__.split("\n", 1)[1].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    mmrec = sub.add_parser("mmrec", help="import an MMRec-format folder (NAME.inter, image_feat.npy, text_feat.npy)")
    mmrec.add_argument("src_dir", help="the MMRec folder")
    mmrec.add_argument("--dataset", required=True, help="dataset name (NAME.inter in SRC_DIR)")
    mmrec.add_argument("--out", default=None, help="output folder (default: ./dataset/NAME)")
    mmrec.add_argument("--force", action="store_true", help="replace a non-empty output folder (never merges)")
    mmrec.add_argument("--drop-leaked", action="store_true",
                       help="keep a (user, item) pair found in several splits only in its earliest split "
                            "(default: refuse the folder)")

    sizes = "; ".join(
        f"{name}: {p['users']:,} users, {p['items']:,} items, image {p['image_dim']}-d, text {p['text_dim']}-d"
        for name, p in PRESETS.items()
    )
    synth = sub.add_parser("synthetic", help="generate the planted synthetic multi-modal dataset",
                           description=f"Generate the planted synthetic dataset. Presets: {sizes}. "
                                       "The same arguments give the same bytes.")
    synth.add_argument("--dataset", required=True, help="dataset name (synth-mm is the committed one)")
    synth.add_argument("--preset", choices=tuple(PRESETS), default="small",
                       help="size preset (default: %(default)s; sizes above)")
    for flag in ("--users", "--items", "--image-dim", "--text-dim", "--min-inter"):
        synth.add_argument(flag, type=_positive_int, default=None, help="override the preset")
    synth.add_argument("--seed", type=int, default=None, help=f"random seed (default {BUILD_SEED})")
    synth.add_argument("--out", default=None, help="output folder (default: ./dataset/NAME)")
    synth.add_argument("--force", action="store_true", help="replace non-empty output folders (never merges)")
    synth.add_argument("--keep-raw", default=None, help="also keep the intermediate MMRec folder here")

    ml = sub.add_parser("movielens", help="build ml-100k-mm from RecBole's bundled MovieLens-100K")
    ml.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed (default %(default)s)")
    ml.add_argument("--out", default=None, help="output folder (default: ./dataset/ml-100k-mm)")
    ml.add_argument("--force", action="store_true", help="replace non-empty output folders (never merges)")
    ml.add_argument("--keep-raw", default=None, help="also keep the intermediate MMRec folder here")
    return parser


def _run(args, argv):
    """Write the dataset; returns its name and the folder written."""
    if getattr(args, "dataset", None) is not None:
        check_dataset_name(args.dataset)
    if args.command == "mmrec":
        command = "python -m recbole_gtc.prepare " + shlex.join(argv)
        stats = import_mmrec(args.src_dir, args.dataset, out_dir=args.out, provenance=[f"Written by: {command}"],
                             drop_leaked=args.drop_leaked, force=args.force)
        return args.dataset, stats["out_dir"]
    if args.command == "synthetic":
        stats = build_synthetic(args.dataset, preset=args.preset, out_dir=args.out, keep_raw=args.keep_raw,
                                users=args.users, items=args.items, image_dim=args.image_dim,
                                text_dim=args.text_dim, min_inter=args.min_inter, seed=args.seed, force=args.force)
        return args.dataset, stats["out_dir"]
    stats = build_movielens(out_dir=args.out, keep_raw=args.keep_raw, seed=args.seed, force=args.force)
    return MOVIELENS_NAME, stats["out_dir"]


def train_command(name, out_dir):
    """How to train on dataset ``name`` written to ``out_dir``: the runner's command line, with
    ``--data_path`` only where the runner would not find the folder by itself, preceded by the
    rename it needs when the folder is not named after the dataset (RecBole looks for
    ``<data_path>/<name>/<name>.*``)."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    runner = "python run_recbole_gtc.py" if os.path.isfile("run_recbole_gtc.py") else "python -m recbole_gtc"
    command = f"{runner} --model=GTC --dataset={shlex.quote(name)}"
    if os.path.basename(out_dir) != name:
        target = os.path.join(parent, name)
        return f"rename {out_dir} to {target}, then train on it: {command} --data_path={shlex.quote(parent)}"
    if os.path.abspath(default_data_path(name)) != parent:
        command += f" --data_path={shlex.quote(parent)}"
    return f"train on it: {command}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            name, out_dir = _run(args, argv)
    except RecboleGTCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # every command writes its folder under a temporary name and renames it when complete
        print(f"error: interrupted ({stop_words(exc)}): no dataset was written; run the command again",
              file=sys.stderr)
        return stop_status(exc)
    print(train_command(name, out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
