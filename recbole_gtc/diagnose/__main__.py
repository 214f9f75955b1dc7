"""``python -m recbole_gtc.diagnose {run,tc-bound} ...`` (see :mod:`recbole_gtc.diagnose`)."""

import argparse
import sys

from recbole_gtc.diagnose.bound_report import write_bound_report
from recbole_gtc.diagnose.run_report import diagnose_run
from recbole_gtc.utils.errors import RecboleGTCError


def _floats(text):
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text):
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recbole_gtc.diagnose",
                                     description="Why a model wins or loses (docs/diagnostics.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="diagnostics of a finished run folder",
                         description="Test metrics per user group, the filter's reconstruction error and "
                                     "linear probes, user-awareness on planted data, modality balance and the "
                                     "TC bound (per epoch when trained with diagnostics: True).")
    run.add_argument("run_dir", help="the run folder (holding run.json, best.pth, test_per_user.npz)")
    run.add_argument("--out", default=None, help="output folder (default: RUN_DIR/diagnose)")
    run.add_argument("--data_path", default=None, help="the folder holding the dataset's folder, if it moved")
    bound = sub.add_parser("tc-bound", help="the TC bound against the truth on planted Gaussian views")
    bound.add_argument("--out", default="tc-bound", help="output folder (default: ./tc-bound)")
    bound.add_argument("--rhos", type=_floats, default=(0.1, 0.3, 0.5, 0.7, 0.9), help="dependence strengths")
    bound.add_argument("--batch-sizes", type=_ints, default=(64, 256, 1024, 2048), help="batch sizes n")
    bound.add_argument("--views", type=int, default=3, help="number of views (GTC: ID + 2 modalities = 3)")
    bound.add_argument("--dim", type=int, default=8, help="width of each view")
    bound.add_argument("--repeats", type=int, default=5, help="independent samples per point")
    bound.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "run":
            paths = diagnose_run(args.run_dir, out_dir=args.out, data_path=args.data_path)
        else:
            if args.views < 2 or args.dim < 1 or args.repeats < 2 or not args.rhos or not args.batch_sizes:
                raise RecboleGTCError("tc-bound needs --views >= 2, --dim >= 1, --repeats >= 2 and some rhos and "
                                      "batch sizes")
            if any(not 0 < r < 1 for r in args.rhos) or any(n < 2 for n in args.batch_sizes):
                raise RecboleGTCError("tc-bound: every rho must be in (0, 1) and every batch size >= 2")
            paths = write_bound_report(args.out, args.rhos, args.batch_sizes, args.views, args.dim, args.repeats,
                                       args.seed)
    except RecboleGTCError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(paths["md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
