# Leave-site-out folds shared by train_models.sh and cross_validate.sh (sourced, not run).
# Each fold holds out one T2w and one T2*w site of ../shared/data/spine-public (the errsm volumes are one site).
held_out_sites() {
  case $1 in
    A) printf '%s\n' "spinalcordtoolbox/spinalcordtoolbox@2f89740" "Philips";;
    B) printf '%s\n' "unf (spine-generic; IUGM)" "UCL";;
    C) printf '%s\n' "ivadomed/ivadomed@3ef3730" "NWU";;
    *) echo "unknown fold: $1" >&2; return 1;;
  esac
}

# RUN/NAME's network as a final network is kept: its last epoch (the moving average of a run with --ema), else
# NAME.keras. A fold's NAME.keras is its best epoch on the held-out sites, which flatters them.
as_shipped() {
  local f
  for f in "$1.last-average.keras" "$1.last.keras" "$1.keras"; do [[ -f $f ]] && { echo "$f"; return; }; done
  echo "$1.keras"
}
