#!/usr/bin/env bash
# Install everything basicseg, its tests and its demo need on a fresh Debian/Ubuntu machine with Python >= 3.10.
#   bash scripts/setup.sh            # Python package (CPU TensorFlow) + test tools
#   SYSTEM=0 bash scripts/setup.sh   # skip the Debian packages (R oracle, Chromium) when not root
# Idempotent; pip reuses what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [[ "${SYSTEM:-1}" == 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  need=()
  Rscript -e 'library(lmerTest)' >/dev/null 2>&1 || need+=(r-base-core r-cran-lme4 r-cran-lmertest)
  command -v chromium >/dev/null || need+=(chromium)
  if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[cpu,test]"
