#!/usr/bin/env bash
# Regenerate every shipped model and the leave-site-out validation runs behind the README's figures.
#   bash scripts/train_models.sh [BIDS_DIR] [RUNS_DIR]
# Defaults: ../shared/data/spine-public and train_runs/. Final models (trained on all sites) are copied
# into basicseg/networks/weights/ with their model cards and learning curves. Each run is capped in wall time
# (minutes below, measured on the 2-core CPU that produced the shipped weights); runs are resumable, so
# re-running with a larger cap continues where a run stopped. On a GPU raise the caps.
# Lesion networks start from the cord network of the same fold and architecture (--init-from).
# A second line for the same run with more epochs resumes it: the lesion networks run 8 epochs, then are
# resumed to 20 (a second learning-rate decay; fold C's held-out Dice 0.670 -> 0.730, docs/models.md). The
# BASICseg-3 cord networks are resumed to 20 epochs after their lesion networks started from their 8-epoch
# weights (fold C's held-out Dice 0.945 -> 0.954). The lesion networks are then resumed to 30 epochs (a third
# decay; fold A's held-out Dice 0.562 -> 0.579, fold C's 0.730 -> 0.742).
# PLAN (one "kind target architecture minutes [epochs [ema]]" per line; kind = final or fold A/B/C; epochs, default
# 500, also bounds the run and sets the span of the learning-rate decay; ema, the momentum of the moving average
# of the weights that is validated and shipped, default none) can be overridden.
set -euo pipefail
BIDS=${1:-../shared/data/spine-public}
RUNS=${2:-train_runs}
NPROCS=${NPROCS:-2}
STEPS=${STEPS:-50}          # batches of 32 per epoch; validation runs after each epoch
WEIGHTS=basicseg/networks/weights
# PLAN=gpu: every shipped network once, final models only, the shipped epochs, each capped at 2 minutes: the
# retraining of a GPU machine (10 minutes in all; epochs, not the caps, bound it there). Compare the new weights
# leave-site-out (the fold runs above, then cross_validate.sh) before shipping them.
if [[ "${PLAN:-}" == gpu ]]; then
  PLAN="
final localiser 1 2 12
final cord 1 2 42
final cord 3 2 8 0.99
final lesion 3 2 8 0.99
final lesion 3 2 20 0.99
final cord 3 2 20 0.99
final lesion 3 2 30 0.99
final cord 2 2 5
final lesion 1 2 42"
fi
PLAN=${PLAN:-"
final localiser 1 6
final cord 1 50
final cord 2 5
final lesion 1 42
fold-A localiser 1 3
fold-B localiser 1 3
fold-C localiser 1 3
fold-C cord 3 40 8 0.99
fold-C lesion 3 40 8 0.99
fold-C lesion 3 60 20 0.99
fold-C cord 3 60 20 0.99
fold-C lesion 3 100 30 0.99
fold-A cord 3 40 8 0.99
fold-A lesion 3 40 8 0.99
fold-A lesion 3 80 20 0.99
fold-A cord 3 60 20 0.99
fold-A lesion 3 130 30 0.99
fold-B cord 3 40 8 0.99
fold-B lesion 3 40 8 0.99
fold-B lesion 3 60 20 0.99
fold-B cord 3 60 20 0.99
fold-B lesion 3 100 30 0.99
final cord 3 40 8 0.99
final lesion 3 40 8 0.99
final lesion 3 60 20 0.99
final cord 3 60 20 0.99
final lesion 3 110 30 0.99
"}

source "$(dirname "$0")/folds.sh"     # held_out_sites A|B|C, as_shipped RUN/NAME
name() { [[ $1 == localiser ]] && echo localiser || echo "$1-basicseg$2"; }
ship() {   # the best epoch's weights without the optimizer state (3x smaller), card and curves
  python -c "import sys, keras; from basicseg.networks.unet import custom_objects; \
keras.models.load_model(sys.argv[1], custom_objects=custom_objects(), compile=False).save(sys.argv[2])" \
    "$1/$2.keras" "$WEIGHTS/$2.keras"
  cp "$1/$2.json" "$1/$2_curves.tsv" "$1/$2_curves.png" "$WEIGHTS/"
}

while read -r kind target arch minutes epochs ema; do
  [[ -z "$kind" ]] && continue
  model=$(name "$target" "$arch")
  args=(--target "$target" --architecture "$arch" --epochs "${epochs:-500}" --max-minutes "$minutes" --nprocs "$NPROCS" --steps "$STEPS" --resume)
  [[ -n "${ema:-}" ]] && args+=(--ema "$ema")
  run=$([[ $kind == final ]] && echo final || echo "cv-${kind#fold-}")
  # a lesion network starts from the cord network of the same run (same fold, same architecture), when trained:
  # its last epoch (moving average with --ema), as a final run keeps it; a fold's best epoch is chosen on its
  # held-out sites and would carry them into the lesion network's start
  donor=$(as_shipped "$RUNS/$run-cord-basicseg$arch/cord-basicseg$arch")
  [[ $target == lesion && -f "$donor" ]] && args+=(--init-from "$donor")
  if [[ $kind == final ]]; then
    python -m basicseg.training.train "$BIDS" "$RUNS/final-$model" "${args[@]}"
    ship "$RUNS/final-$model" "$model"
  else
    fold=${kind#fold-}
    mapfile -t held < <(held_out_sites "$fold")
    python -m basicseg.training.train "$BIDS" "$RUNS/cv-$fold-$model" "${args[@]}" --val-sites "${held[@]}"
  fi
done <<< "$PLAN"
