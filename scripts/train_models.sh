#!/usr/bin/env bash
# Regenerate every shipped model and the leave-site-out validation runs behind the README's figures.
#   bash scripts/train_models.sh [BIDS_DIR] [RUNS_DIR]
# Defaults: ../shared/data/spine-public and train_runs/. Final models (trained on all sites) are copied
# into basicseg/weights/ with their model cards and learning curves. Wall-time caps keep each run
# within tens of minutes on a 2-core CPU; on a GPU raise --max-minutes/--epochs.
# STAGES (space-separated) selects parts: final-localiser final-cord1 final-lesion3 cv final-cord23 cv-arch cv-lesion
set -euo pipefail
BIDS=${1:-../shared/data/spine-public}
RUNS=${2:-train_runs}
STAGES=${STAGES:-"final-localiser final-cord1 final-lesion3 cv cv-lesion cv-arch final-cord23"}
NPROCS=${NPROCS:-2}
WEIGHTS=basicseg/weights

train() {  # train NAME_DIR ARGS...
  local dir=$1; shift
  python -m basicseg.train "$BIDS" "$RUNS/$dir" --nprocs "$NPROCS" --resume "$@"
}
ship() {   # ship RUN_DIR MODEL_NAME: the best epoch's weights without the optimizer state (3x smaller)
  python -c "import sys, keras; from basicseg.models import custom_objects; \
keras.models.load_model(sys.argv[1], custom_objects=custom_objects(), compile=False).save(sys.argv[2])" \
    "$RUNS/$1/$2.keras" "$WEIGHTS/$2.keras"
  cp "$RUNS/$1/$2.json" "$RUNS/$1/$2_curves.tsv" "$RUNS/$1/$2_curves.png" "$WEIGHTS/"
}
# Leave-site-out folds: each holds out one T2w and one T2*w site (errsm* stay together: one site).
val_sites() {
  case $1 in A) printf '%s\n' "spinalcordtoolbox/spinalcordtoolbox@2f89740" "Philips";;
             B) printf '%s\n' "unf (spine-generic; IUGM)" "UCL";;
             C) printf '%s\n' "ivadomed/ivadomed@3ef3730" "NWU";; esac
}
fold() {  # fold X DIR ARGS...
  local f=$1 dir=$2; shift 2
  mapfile -t sites < <(val_sites "$f")
  train "$dir" "$@" --val-sites "${sites[@]}"
}

for stage in $STAGES; do
  case $stage in
    final-localiser) train final-localiser --target localiser --epochs 80 --max-minutes 6 && ship final-localiser localiser;;
    final-cord1) train final-cord1 --target cord --architecture 1 --epochs 200 --max-minutes 20 && ship final-cord1 cord-basicseg1;;
    final-lesion3) train final-lesion3 --target lesion --architecture 3 --epochs 200 --max-minutes 22 && ship final-lesion3 lesion-basicseg3;;
    cv) for f in A B C; do
          fold $f cv-$f-localiser --target localiser --epochs 40 --max-minutes 3
          fold $f cv-$f-cord1 --target cord --architecture 1 --epochs 60 --max-minutes 6
        done;;
    cv-arch) for a in 2 3; do fold A cv-A-cord$a --target cord --architecture $a --epochs 60 --max-minutes 6; done;;
    cv-lesion) fold A cv-A-lesion3 --target lesion --architecture 3 --epochs 60 --max-minutes 8;;
    final-cord23) for a in 2 3; do
          train final-cord$a --target cord --architecture $a --epochs 80 --max-minutes 6 && ship final-cord$a cord-basicseg$a
        done;;
    *) echo "unknown stage $stage" >&2; exit 64;;
  esac
done
