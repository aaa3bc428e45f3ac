#!/usr/bin/env bash
# Leave-site-out evaluation of the fold models made by scripts/train_models.sh: each fold's localiser and
# cord model segment the held-out sites' images through the full pipeline (basicseg-eval); fold A's
# lesion model is scored on SIMULATED lesions inserted into fold A's held-out images.
#   bash scripts/cross_validate.sh [BIDS_DIR] [RUNS_DIR]     -> RUNS_DIR/cv-summary.tsv
set -euo pipefail
BIDS=${1:-../shared/data/spine-public}
RUNS=${2:-train_runs}
sites() { case $1 in A) printf '%s\n' "spinalcordtoolbox/spinalcordtoolbox@2f89740" "Philips";;
                     B) printf '%s\n' "unf (spine-generic; IUGM)" "UCL";;
                     C) printf '%s\n' "ivadomed/ivadomed@3ef3730" "NWU";; esac; }
for f in A B C; do
  mapfile -t held < <(sites $f)
  python -m basicseg.evaluate "$BIDS" "$RUNS/cv-$f-eval" --target cord \
    --cord-model "$RUNS/cv-$f-cord-basicseg1/cord-basicseg1.keras" --localiser-model "$RUNS/cv-$f-localiser/localiser.keras" \
    --sites "${held[@]}"
done
for arch in 1 3; do   # fold A's lesion models, on SIMULATED lesions in fold A's held-out images
  model="$RUNS/cv-A-lesion-basicseg$arch/lesion-basicseg$arch.keras"
  [[ -f "$model" ]] || continue
  mapfile -t held < <(sites A)
  python -m basicseg.evaluate "$BIDS" "$RUNS/cv-A-eval-lesion$arch" --target lesion --lesions-per-image 3 \
    --cord-model "$RUNS/cv-A-cord-basicseg1/cord-basicseg1.keras" --localiser-model "$RUNS/cv-A-localiser/localiser.keras" \
    --lesion-model "$model" --sites "${held[@]}"
done
python - "$RUNS" <<'PY'
import sys, pandas as pd, pathlib
runs = pathlib.Path(sys.argv[1])
tables = []
for p in sorted(runs.glob("cv-*-eval*/eval_*_images.tsv")):
    t = pd.read_csv(p, sep="\t")
    t.insert(0, "fold", p.parent.name.split("-")[1])
    t.insert(1, "model", p.parent.name.split("eval")[-1].strip("-") or "cord1")
    tables.append(t)
table = pd.concat(tables)
table.to_csv(runs / "cv-summary.tsv", sep="\t", index=False)
print(table[["fold", "model", "image", "site", "suffix", "dice", "hd95_mm"]].round(3).to_string(index=False))
print(table.groupby(["model", "suffix"])["dice"].median().round(3).to_string())
PY
