"""Train and evaluate GTC or RecBole general recommenders on a (multi-modal) dataset.

    python run_recbole_gtc.py --model=GTC --dataset=baby
    python run_recbole_gtc.py --model=GTC,LightGCN,BPR --dataset=synth-mm --epochs=50
    python run_recbole_gtc.py --model=LightGCN --config_files="a.yaml b.yaml" --learning_rate=0.002

Flags mirror RecBole's run_recbole.py; any other ``--key=value`` overrides that config key.
"""

import argparse
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", "-m", default="GTC",
                        help="GTC or a RecBole general recommender; several comma-separated for a comparison")
    parser.add_argument("--dataset", "-d", default="ml-100k-mm", help="dataset folder under data_path")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files, later ones win")
    args, overrides = parser.parse_known_args(argv)
    for arg in overrides:
        if not arg.startswith("--") or "=" not in arg:
            parser.error(f"unrecognised argument '{arg}': overrides take the form --key=value")
    return args, overrides


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    from recbole_gtc.data.utils import check_model_type
    from recbole_gtc.quick_start import comparison_table, run_recbole_gtc
    from recbole_gtc.utils import RecboleGTCError, get_model

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    config_files = args.config_files.split() if args.config_files else None
    results = []
    try:
        for model in models:  # every name checked before anything trains
            check_model_type(model, get_model(model).type)
        for model in models:
            result = run_recbole_gtc(model, args.dataset, config_files, cmd_args=overrides)
            print(f"best valid: {result['best_valid_result']}")
            print(f"test: {result['test_result']}")
            print(result["summary"], flush=True)
            results.append(result)
    except RecboleGTCError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(results) > 1:
        print(f"\nComparison on {args.dataset} (protocol={results[0]['eval_protocol']}, test at best validation epoch):")
        print(comparison_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
