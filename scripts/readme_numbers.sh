#!/usr/bin/env bash
# Regenerate every number of README.md's Results section, from a fresh checkout, on 2 CPU cores
# (the Performance section's come from python -m recbole_gtc.benchmark, with the commands given there).
# Each command is printed, then its SUMMARY lines (and comparison tables). Long: it trains
# every model of the Results tables to early stopping (hours on 2 cores).
#   bash scripts/readme_numbers.sh [SECTION ...]    sections: quickstart synth ml100k
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$(mktemp -d)"
run() {
    echo "\$ $*"
    "$@" --checkpoint_dir="$OUT/saved" --graph_cache_dir="$OUT/graph_cache" | grep -E '^(SUMMARY|\|)'
    echo
}
sections=("${@:-quickstart synth ml100k}")
for section in ${sections[@]}; do
case "$section" in
quickstart)
    run python run_recbole_gtc.py --model=GTC --dataset=synth-mm
    ;;
synth)
    run env OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=synth-mm --train_denoiser=False
    run python run_recbole_gtc.py --model=LightGCN,BPR --dataset=synth-mm
    ;;
ml100k)
    run env OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=ml-100k-mm --learning_rate=0.001
    run env OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=ml-100k-mm --learning_rate=0.001 --train_denoiser=False
    run python run_recbole_gtc.py --model=LightGCN,BPR --dataset=ml-100k-mm   # the "earlier measurements" rows
    ;;
*) echo "unknown section $section (quickstart synth ml100k)"; exit 2 ;;
esac
done
