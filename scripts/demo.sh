#!/usr/bin/env bash
# Run basicseg on the embedded demo dataset: participant level, then group level.
#   bash scripts/demo.sh [OUTPUT_DIR]     (default: demo_out)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-demo_out}
SYSTEM=0 bash scripts/setup.sh   # the demo needs neither R nor Chromium
basicseg demo/ds-demo "$OUT" participant --work-dir "${OUT%/}_work" --nprocs "${NPROCS:-2}" --basic-score
# a second method for the Table-2 comparison: the shipped BASICseg-2 cord model, cord only
basicseg demo/ds-demo "${OUT%/}_basicseg2" participant --work-dir "${OUT%/}_work" --nprocs "${NPROCS:-2}" \
  --cord-model cord-basicseg2 --lesion-model none --skip-bids-validation
basicseg demo/ds-demo "$OUT" group --compare basicseg2="${OUT%/}_basicseg2"
echo
echo "Subject reports: $(ls "$OUT"/sub-*.html | tr '\n' ' ')"
echo "Group report:    $OUT/group_report.html"
