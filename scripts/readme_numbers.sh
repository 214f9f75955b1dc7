#!/usr/bin/env bash
# Regenerate README.md's quick-start line and every number of docs/single-runs.md, from a fresh checkout, on 2 CPU cores
# (docs/performance.md's come from python -m benchmarks.speed and benchmarks.memory, with the commands given there).
# Each command is printed, then its SUMMARY lines (and comparison tables). Long: it trains
# every model of the Results tables to early stopping (hours on 2 cores).
#   bash scripts/readme_numbers.sh [SECTION ...]    sections: quickstart synth ml100k spread
# 'spread' (not in the default set) reruns the quick start under each CPU-kernel setting of
# docs/reproducibility.md's table, a stand-in for other CPUs' float rounding on one machine.
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
# The single-run tables were measured under the AVX2 pin, the default until 2026-12-06: the
# pin reproduces them on that machine bit for bit, other settings within float rounding.
synth)
    run env RECBOLE_GTC_CPU_KERNELS=avx2 OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=synth-mm --train_denoiser=False
    run env RECBOLE_GTC_CPU_KERNELS=avx2 python run_recbole_gtc.py --model=LightGCN,BPR --dataset=synth-mm
    ;;
ml100k)
    run env RECBOLE_GTC_CPU_KERNELS=avx2 OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=ml-100k-mm --learning_rate=0.001
    run env RECBOLE_GTC_CPU_KERNELS=avx2 OMP_NUM_THREADS=1 python run_recbole_gtc.py --model=GTC --dataset=ml-100k-mm --learning_rate=0.001 --train_denoiser=False
    run env RECBOLE_GTC_CPU_KERNELS=avx2 python run_recbole_gtc.py --model=LightGCN,BPR --dataset=ml-100k-mm   # the "earlier measurements" rows
    ;;
spread)
    # The quick start under each kernel setting of docs/reproducibility.md's table, a stand-in
    # for other CPUs' float rounding: native (the default) and the AVX2 pin, two threads and
    # one, the pin with ATen's or MKL's AVX-512 path, scalar ATen with MKL's compatible path.
    qs=(python run_recbole_gtc.py --model=GTC --dataset=synth-mm)
    run "${qs[@]}"
    run env OMP_NUM_THREADS=1 "${qs[@]}"
    run env RECBOLE_GTC_CPU_KERNELS=avx2 "${qs[@]}"
    run env RECBOLE_GTC_CPU_KERNELS=avx2 OMP_NUM_THREADS=1 "${qs[@]}"
    run env RECBOLE_GTC_CPU_KERNELS=avx2 ATEN_CPU_CAPABILITY=avx512 OMP_NUM_THREADS=1 "${qs[@]}"
    run env RECBOLE_GTC_CPU_KERNELS=avx2 MKL_CBWR=AVX512 OMP_NUM_THREADS=1 "${qs[@]}"
    run env ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1 "${qs[@]}"
    ;;
*) echo "unknown section $section (quickstart synth ml100k spread)"; exit 2 ;;
esac
done
