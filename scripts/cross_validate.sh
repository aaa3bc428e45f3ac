#!/usr/bin/env bash
# Leave-site-out evaluation of the fold models made by scripts/train_models.sh: each fold's localiser and
# cord models (at their last epoch, as the final ones are kept) segment the held-out sites' images through
# the full pipeline (basicseg-eval); each fold's lesion models are scored on SIMULATED lesions (3 per image)
# inserted into that fold's held-out images, at their best held-out epoch (eval-lesionN) and at their last
# epoch (eval-lesionN-last).
# Each fold's BASICseg-3 cord + lesion pair is also scored on the clinical patterns (SIMULATED: GM-confined,
# rim-sparing, whole section, haemorrhagic core; PATTERN_SEEDS per pattern) and a lesion-free copy of every
# held-out image (eval-patterns3; the lesion network at its last epoch, with the shipped card's rule, mirror and
# shift average), and the same cases recoloured as bright as the CSF (eval-bright-cord3): the tables behind
# scripts/tune_lesion.py, scripts/tune_qc.py and
# scripts/model_report.py --patterns (the README's cord and lesion tables).
# An evaluation is redone when its model is newer than its table (a resumed, longer run).
#   bash scripts/cross_validate.sh [BIDS_DIR] [RUNS_DIR]      then: python scripts/model_report.py
set -euo pipefail
BIDS=${1:-../shared/data/spine-public}
RUNS=${2:-train_runs}
PATTERN_SEEDS=${PATTERN_SEEDS:-2}
# the fold networks are scored under the shipped lesion network's rule (threshold, minimum volume, extent), so
# that their cases and QC summaries are what the app would report
# and with its test-time augmentation: the mirror, and the shift average's distance in mm (0: none)
read -r THRESHOLD MIN_MM3 EXTENT SHIFT_MM < <(python -c "import json, sys; from basicseg.segment.crop import PIXEL_MM; \
from basicseg.segment.infer import card_settings; s = card_settings(json.load(open(sys.argv[1]))); \
print(s['threshold'], s['min_volume_mm3'], s['extent_threshold'], max([abs(v) for p in s['shifts'] for v in p] or [0]) * PIXEL_MM)" \
  basicseg/networks/weights/lesion-basicseg3.json)
RULE="$THRESHOLD $MIN_MM3 $EXTENT"
source "$(dirname "$0")/folds.sh"     # held_out_sites A|B|C, as_shipped RUN/NAME
for f in A B C; do
  mapfile -t held < <(held_out_sites "$f")
  loc=$(as_shipped "$RUNS/cv-$f-localiser/localiser")
  [[ -f "$loc" ]] || { echo "fold $f: no localiser in $RUNS (train it first): skipped" >&2; continue; }
  for arch in 1 2 3; do
    model=$(as_shipped "$RUNS/cv-$f-cord-basicseg$arch/cord-basicseg$arch")
    out="$RUNS/cv-$f-eval-cord$arch"
    [[ -f "$model" && ! "$out/eval_cord_images.tsv" -nt "$model" ]] || continue
    python -m basicseg.training.evaluate "$BIDS" "$out" --target cord --cord-model "$model" --localiser-model "$loc" \
      --sites "${held[@]}"
  done
  # the last epoch's moving average, as the final network is kept (the best epoch is chosen on the held-out sites)
  lesion="$RUNS/cv-$f-lesion-basicseg3/lesion-basicseg3.last-average.keras"
  # native contrast, then the held-out images recoloured with the cord nearly as bright as its CSF: leave-site-out
  # failures that QC must flag (scripts/tune_qc.py counts no flag on the stress as a false alarm)
  for contrast in native bright-cord; do
    out="$RUNS/cv-$f-eval-$([[ $contrast == native ]] && echo patterns3 || echo bright-cord3)"
    [[ -f "$lesion" && ! "$out/eval_patterns.tsv" -nt "$lesion" ]] || continue
    python -m basicseg.training.evaluate "$BIDS" "$out" --target lesion --lesion-set patterns \
      --lesions-per-image "$PATTERN_SEEDS" --cord-model "$(as_shipped "$RUNS/cv-$f-cord-basicseg3/cord-basicseg3")" \
      --localiser-model "$loc" --lesion-model "$lesion" --sites "${held[@]}" --lesion-rule $RULE \
      --mirror --lesion-shift "$SHIFT_MM" --contrast "$contrast"
  done
  cord=$(as_shipped "$RUNS/cv-$f-cord-basicseg3/cord-basicseg3")      # the default cord network, else BASICseg-1
  [[ -f "$cord" ]] || cord=$(as_shipped "$RUNS/cv-$f-cord-basicseg1/cord-basicseg1")
  for arch in 1 3; do
    # the best held-out epoch (flatters the fold) and the last epoch (the rule the shipped final model follows)
    for kept in "" last; do
      model="$RUNS/cv-$f-lesion-basicseg$arch/lesion-basicseg$arch${kept:+.$kept}.keras"
      # a run with --ema: its last epoch's moving average, not the raw weights it would resume from
      [[ $kept == last && -f "${model%.keras}-average.keras" ]] && model="${model%.keras}-average.keras"
      out="$RUNS/cv-$f-eval-lesion$arch${kept:+-$kept}"
      [[ -f "$model" && ! "$out/eval_lesion_images.tsv" -nt "$model" ]] || continue
      # --mirror as the lesion cards say: a .last file has no card beside it, and would be scored without it
      python -m basicseg.training.evaluate "$BIDS" "$out" --target lesion --lesions-per-image 3 --mirror \
        --cord-model "$cord" --localiser-model "$loc" \
        --lesion-model "$model" --sites "${held[@]}"
    done
  done
done

# the per-image and per-case tables behind the README's figures, kept in the repository (a few kB each): the
# figures can then be re-derived (scripts/model_report.py, scripts/tune_qc.py) without the RUNS folder, which
# holds days of CPU training and does not survive a machine
KEEP=${KEEP:-docs/validation}
for table in "$RUNS"/cv-*-eval-*/eval_{patterns,cord_images,lesion_images}.tsv; do
  [[ -f "$table" ]] || continue
  run=$(dirname "$table")
  # settings.json: the command, the models' SHA-256 and the versions that made the table
  mkdir -p "$KEEP/${run##*/}" && cp "$table" "$run/settings.json" "$KEEP/${run##*/}/"
done
