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
    --cord-model "$RUNS/cv-$f-cord1/cord-basicseg1.keras" --localiser-model "$RUNS/cv-$f-localiser/localiser.keras" \
    --sites "${held[@]}"
done
if [[ -f "$RUNS/cv-A-lesion3/lesion-basicseg3.keras" ]]; then
  mapfile -t held < <(sites A)
  python -m basicseg.evaluate "$BIDS" "$RUNS/cv-A-eval" --target lesion --lesions-per-image 3 \
    --cord-model "$RUNS/cv-A-cord1/cord-basicseg1.keras" --localiser-model "$RUNS/cv-A-localiser/localiser.keras" \
    --lesion-model "$RUNS/cv-A-lesion3/lesion-basicseg3.keras" --sites "${held[@]}"
fi
python - "$RUNS" <<'PY'
import sys, pandas as pd, pathlib
runs = pathlib.Path(sys.argv[1])
tables = []
for f in "ABC":
    for target in ("cord", "lesion"):
        p = runs / f"cv-{f}-eval" / f"eval_{target}_images.tsv"
        if p.is_file():
            t = pd.read_csv(p, sep="\t"); t.insert(0, "fold", f); t.insert(1, "target", target); tables.append(t)
table = pd.concat(tables)
table.to_csv(runs / "cv-summary.tsv", sep="\t", index=False)
print(table[["fold", "target", "image", "site", "suffix", "dice", "hd95_mm"]].round(3).to_string(index=False))
print(table.groupby(["target", "suffix"])["dice"].median().round(3).to_string())
PY
