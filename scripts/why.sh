#!/usr/bin/env bash
# The "Why" section of results/README.md: GTC, its user-conditioned filter, DRAGON and the
# referees' isolation ablation with per-epoch diagnostics, then `diagnose run` on every run and
# the TC-bound study (docs/diagnostics.md).
#   bash scripts/why.sh synth-mm       # 6 specs x 3 seeds, two one-thread workers, then diagnose
#   bash scripts/why.sh ml-100k-mm     # the same without DRAGON, at GTC's learning rate 1e-3
#   bash scripts/why.sh tc-bound       # results/tc-bound/
#   bash scripts/why.sh summary DATASET  # the tables of the page from results/why/DATASET/
# EPOCHS caps training (default: the protocol's 1000 with early stopping); the page's synth-mm
# runs used EPOCHS=120 and its ml-100k-mm runs EPOCHS=50 WORKERS=1 on a loaded machine, which
# the page says. WORKERS=1 trains the seeds one after another. NICE (default 5) lowers priority.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
EPOCHS="${EPOCHS:-1000}"
NICE="${NICE:-5}"
OUT=results/why
SAVED="${SAVED:-saved/why}"
SEEDS=999,1000,1001

specs() {  # the study's specs (GTC's settings on the dataset as prefix $1; $2: a baseline to add, or "")
    local p="$1"
    echo "GTC${p:+[$p]},GTC[${p:+$p,}diffusion_condition=users],${2:+$2,}GTC[${p:+$p,}use_diffusion=False],GTC[${p:+$p,}use_diffusion=False,use_tc=False],GTC[${p:+$p,}use_diffusion=False,tc_mode=pairwise]"
}
study() {  # dataset, specs, seeds [, --report_only]
    nice -n "$NICE" python run_recbole_gtc.py --dataset="$1" --model="$2" --seeds="$3" --epochs="$EPOCHS" \
        --diagnostics=True --results_dir="$OUT" --checkpoint_dir="$SAVED" "${@:4}"
}
both() {  # dataset, GTC prefix, baseline: WORKERS (1 or 2) over disjoint seeds, then the tables and diagnostics
    local models
    models="$(specs "$2" "$3")"
    if [ "${WORKERS:-2}" = 1 ]; then
        study "$1" "$models" "$SEEDS"
    else
        study "$1" "$models" 999,1001 &
        study "$1" "$models" 1000, &
        wait
    fi
    study "$1" "$models" "$SEEDS" --report_only
    # every run folder of the study (runs.csv's run ids) through `diagnose run`
    python -c "import csv, sys; [print(r['run_id']) for r in csv.DictReader(open(sys.argv[1]))]" "$OUT/$1/runs.csv" |
    while read -r run_id; do
        nice -n "$NICE" python -m recbole_gtc.diagnose run "$SAVED/$run_id" --out "$OUT/$1/diagnose/$run_id"
    done
    summary "$1"
}

summary() {  # mean ± std over seeds of the per-run diagnostics: probes, user-awareness, last epoch
    python - "$OUT/$1" <<'PY'
import csv, glob, os, sys
import numpy as np
from scipy.stats import spearmanr
root = sys.argv[1]
label_of = {r["run_id"]: r["label"] for r in csv.DictReader(open(os.path.join(root, "runs.csv")))}
probes, aware, last = {}, {}, {}
for folder in sorted(glob.glob(os.path.join(root, "diagnose", "*"))):
    label = label_of.get(os.path.basename(folder))
    if label is None:
        continue
    for r in csv.DictReader(open(os.path.join(folder, "probes.csv"))):
        probes.setdefault((label, r["modality"], r["features"], r["target"]), []).append(float(r["r2"]))
    rows = list(csv.DictReader(open(os.path.join(folder, "users.csv"))))
    if rows:
        w = np.array([float(r["planted_w"]) for r in rows])
        for key in ("view_weight", "score_share"):
            v = np.array([float(r[key]) for r in rows])
            ok = np.isfinite(v)
            aware.setdefault((label, key), []).append(spearmanr(v[ok], w[ok])[0])
    epochs = list(csv.DictReader(open(os.path.join(folder, "epochs.csv"))))
    if epochs:
        for k, v in epochs[-1].items():
            if k not in ("epoch", "seconds") and v != "":
                last.setdefault((label, k), []).append(float(v))
def ms(v):
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f} ({len(v)})" if len(v) > 1 else f"{v[0]:.3f} (1)"
print("## Probes: R² (mean ± std over seeds (n))")
for key, v in probes.items():
    print(" | ".join(key), "|", ms(v))
print("## User-awareness: Spearman rho with planted w_u")
for key, v in aware.items():
    print(" | ".join(key), "|", ms(v))
print("## Last epoch's diagnostics")
for key, v in last.items():
    print(" | ".join(key), "|", ms(v))
PY
}

case "${1:-}" in
    synth-mm) both synth-mm "" DRAGON ;;
    # DRAGON's ml-100k-mm runs are those of the 5-seed study (results/ml-100k-mm), full length
    ml-100k-mm) both ml-100k-mm "learning_rate=0.001" "" ;;
    tc-bound) nice -n "$NICE" python -m recbole_gtc.diagnose tc-bound --out results/tc-bound ;;
    summary) summary "$2" ;;
    *) echo "usage: bash scripts/why.sh synth-mm|ml-100k-mm|tc-bound|summary DATASET" >&2; exit 2 ;;
esac
