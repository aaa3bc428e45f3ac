#!/bin/bash
# Submit basicseg on SLURM: a job array over the participants (one per task), then the group
# level once the array has finished (--dependency=afterok:<array job id>).
#
# usage: hpc/submit.sh [options] BIDS_DIR OUTPUT_DIR [-- extra basicseg arguments]
#   --sif FILE               run inside this Apptainer/Singularity image (apptainer exec
#                            --cleanenv --containall); default: the plain install (basicseg on PATH)
#   --cmd "CMD"              plain-install command (default: basicseg)
#   --gpu                    request one GPU per task (--gres=gpu:1) and, with --sif, pass --nv
#   --participant-label L..  only these participants (default: every row of participants.tsv,
#                            else every sub-* folder)
#   --cpus N                 CPUs per task, passed on as --nprocs (default 2)
#   --mem M                  memory per task (default 8G)
#   --time T                 time limit per task (default 02:00:00)
#   --max-parallel K         at most K array tasks at once (--array=1-n%K)
#   --partition P, --account A, --qos Q   passed to sbatch
#   --log-dir D              exit codes, job file and SLURM logs (default: OUTPUT_DIR_slurm)
#   --group-dependency TYPE  afterok (default: the group runs only if every participant
#                            succeeded) or afterany (the group runs on whatever succeeded)
#   --skip-codes "C.."       basicseg exit codes recorded as "skipped", not failed (default 18:
#                            a participant with no matching image, e.g. only T2*w); "" for none
#   --no-group               submit the array only
#   --dry-run                print the sbatch commands, submit nothing
# Prints "array_job_id=<id>" and "group_job_id=<id>" on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit "${1:-64}"; }

sif="" cmd="basicseg" gpu=0 cpus=2 mem=8G time=02:00:00 max_parallel="" log_dir=""
dep=afterok group=1 dry=0 skip_codes=18 labels=() sbatch_common=() positional=() extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --sif) sif=$(realpath "$2"); shift 2 ;;
    --cmd) cmd=$2; shift 2 ;;
    --gpu) gpu=1; shift ;;
    --participant-label|--participant_label)
      shift; while [[ $# -gt 0 && $1 != -* ]]; do labels+=("${1#sub-}"); shift; done ;;
    --cpus) cpus=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --max-parallel) max_parallel=$2; shift 2 ;;
    --partition|--account|--qos) sbatch_common+=("$1=$2"); shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --group-dependency) dep=$2; shift 2 ;;
    --skip-codes) skip_codes=$2; shift 2 ;;
    --no-group) group=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "unknown option $1" >&2; usage 64 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -eq 2 ]] || usage 64
[[ $dep == afterok || $dep == afterany ]] || { echo "--group-dependency: afterok or afterany" >&2; exit 64; }
bids_dir=$(realpath "${positional[0]}")
[[ -d $bids_dir ]] || { echo "no such BIDS dataset: $bids_dir" >&2; exit 66; }
mkdir -p "${positional[1]}"
output_dir=$(realpath "${positional[1]}")
log_dir=$(realpath -m "${log_dir:-${output_dir%/}_slurm}")
mkdir -p "$log_dir/logs"

# The participant list is frozen at submission: line N is array task N.
list="$log_dir/participants.txt"
if [[ ${#labels[@]} -gt 0 ]]; then
  printf '%s\n' "${labels[@]}" > "$list"
elif [[ -f $bids_dir/participants.tsv ]]; then
  awk -F'\t' '{ sub(/\r$/, "") }
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == "participant_id") c = i; next }
    c && NF { v = $c; sub(/^sub-/, "", v); print v }' "$bids_dir/participants.tsv" > "$list"
else
  find "$bids_dir" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' \
    | sed 's/^sub-//' | sort > "$list"
fi
n=$(grep -c . "$list" || true)
[[ $n -gt 0 ]] || { echo "no participants found in $bids_dir" >&2; exit 66; }

# The job file: every setting, shell-quoted, sourced by both sbatch scripts.
job_env="$log_dir/job.env"
{
  printf 'BIDS_DIR=%q\nOUTPUT_DIR=%q\nLOG_DIR=%q\nPARTICIPANTS_LIST=%q\n' \
    "$bids_dir" "$output_dir" "$log_dir" "$list"
  printf 'BASICSEG_SIF=%q\nBASICSEG_CMD=%q\nBASICSEG_GPU=%q\nSKIP_CODES=%q\n' \
    "$sif" "$cmd" "$gpu" "$skip_codes"
  printf 'BASICSEG_EXTRA_ARGS=('
  [[ ${#extra[@]} -eq 0 ]] || printf '%q ' "${extra[@]}"
  printf ')\n'
} > "$job_env"
rm -rf "$log_dir/exit_codes.d" "$log_dir/exit_codes.tsv"

res=(--cpus-per-task="$cpus" --mem="$mem" --time="$time" "${sbatch_common[@]}")
gres=(); [[ $gpu == 1 ]] && gres=(--gres=gpu:1)
array="1-$n${max_parallel:+%$max_parallel}"
array_cmd=(sbatch --parsable --array="$array" "${res[@]}" "${gres[@]}"
  --output="$log_dir/logs/%x_%A_%a.out" "$HERE/basicseg_array.sbatch" "$job_env")
if [[ $dry == 1 ]]; then
  printf '%q ' "${array_cmd[@]}"; echo
  array_id=DRYRUN
else
  array_id=$("${array_cmd[@]}")
  array_id=${array_id%%;*}   # --parsable prints "id[;cluster]"
fi
echo "array_job_id=$array_id"
echo "submitted $n participant(s) from $list" >&2

if [[ $group == 1 ]]; then
  group_cmd=(sbatch --parsable --dependency="$dep:$array_id" --kill-on-invalid-dep=yes
    "${res[@]}" --output="$log_dir/logs/%x_%j.out" "$HERE/basicseg_group.sbatch" "$job_env")
  if [[ $dry == 1 ]]; then
    printf '%q ' "${group_cmd[@]}"; echo
    group_id=DRYRUN
  else
    group_id=$("${group_cmd[@]}")
    group_id=${group_id%%;*}
  fi
  echo "group_job_id=$group_id"
fi
echo "exit codes: $log_dir/exit_codes.tsv   logs: $log_dir/logs/" >&2
