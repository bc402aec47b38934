#!/usr/bin/env bash
# Trains (or resumes) the paper's Table 2 runs (with a second psMNIST row on the authors'
# later settings) and the learned-W_r rows of Table 1, one after another, each in
# runs/<row>/. A finished row is skipped (and a diverged one: its results.json says so),
# so running this again after any stop, on any machine, continues where the committed
# checkpoints left off.
#
#   bash runs/run.sh                 # every row, in order
#   bash runs/run.sh smnist-organics64 psmnist-organics64   # only these rows
#
# The rows and their settings: runs/rows.txt (one line a row: its name, then its flags of
# `cargo xtask train`), in the order of training; `cargo xtask rows` checks and prints them.
# Progress lines go to runs/<row>/train.log. XTASK overrides the command (default
# `cargo xtask`); the runs start at low priority so builds and tests stay usable.
# CPUS pins the runs to those cores (`taskset -c $CPUS`). Runs side by side share all cores
# evenly; pinning gives one row a core of its own and the others the rest (docs/RESULTS.md,
# "Wall time"). Pin every run: an unpinned one splits its batches over all cores, the
# pinned ones' included.
#
#   CPUS=0 setsid bash runs/run.sh smnist-organics64 > a.out 2>&1 &            # core 0 alone
#   CPUS=1 setsid bash runs/run.sh psmnist-organics64 > b.out 2>&1 &           # these two
#   CPUS=1 setsid bash runs/run.sh psmnist-organics64-authors > c.out 2>&1 &   # share core 1
#
# In the background: `setsid bash runs/run.sh > runs.out 2>&1 &`. Where Linux groups
# processes for scheduling by terminal (its autogroup feature), `nice` only ranks processes
# within their own group, so a script started through setsid also lowers its own group's
# weight; it never touches a group it did not start.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ] && [ -w /proc/self/autogroup ]; then
  echo 19 > /proc/self/autogroup 2>/dev/null || true
fi
XTASK=${XTASK:-cargo xtask}
PIN=()
if [ -n "${CPUS:-}" ]; then
  command -v taskset >/dev/null || { echo "CPUS needs taskset (util-linux)" >&2; exit 2; }
  taskset -c "$CPUS" true || { echo "CPUS=$CPUS: not cores this machine has" >&2; exit 2; }
  PIN=(taskset -c "$CPUS")
fi
# Each row: its name, then its flags, read by `xtask rows`, which checks every row's name
# and flags as `train` takes them before anything starts (and prints its error otherwise).
# shellcheck disable=SC2086
LIST=$($XTASK rows --runs runs) || exit 2
ROWS=()
NAMES=()
while IFS=$'\t' read -r name flags; do
  if [ -n "$name" ]; then
    ROWS+=("$name|$flags")
    NAMES+=("$name")
  fi
done <<< "$LIST"
[ ${#ROWS[@]} -gt 0 ] || { echo "runs/rows.txt names no row" >&2; exit 2; }

# Whether row $1 is among the rest of the arguments (or there are none: every row).
wanted() { [ $# -eq 1 ] && return 0; local r; for r in "${@:2}"; do [ "$r" = "$1" ] && return 0; done; return 1; }

for r in "$@"; do
  wanted "$r" "${NAMES[@]}" || { echo "$r: not a row of runs/rows.txt" >&2; exit 2; }
done

for row in "${ROWS[@]}"; do
  name=${row%%|*}
  # One word a flag, as `xtask rows` split them (no glob expansion).
  read -ra flags <<< "${row#*|}"
  wanted "$name" "$@" || continue
  dir=runs/$name
  if grep -qs '"status": "finished"' "$dir/results.json"; then
    echo "$name: finished"
    continue
  fi
  # Training is deterministic: resuming a diverged run would repeat the same steps.
  if grep -qs '"status": "diverged"' "$dir/results.json"; then
    echo "$name: diverged (runs/README.md); not resumed"
    continue
  fi
  # Resume from the checkpoints if there are any; a run stopped before its first epoch
  # ended has none, and nothing of it is worth keeping.
  # (A resumed run drops the metrics of an epoch that was interrupted by itself.)
  resume="--overwrite"
  compgen -G "$dir/checkpoint/scheduler-*.bpk" >/dev/null && resume="--resume"
  mkdir -p "$dir"
  echo "== $(date -u +%FT%TZ) $name: start ($resume)${CPUS:+ on cores $CPUS}" | tee -a "$dir/train.log"
  # shellcheck disable=SC2086
  status=0
  nice -n 19 ${PIN[@]+"${PIN[@]}"} $XTASK train ${flags[@]+"${flags[@]}"} --artifact-dir "$dir" $resume >>"$dir/train.log" 2>&1 || status=$?
  echo "== $(date -u +%FT%TZ) $name: exit $status" | tee -a "$dir/train.log"
  # A diverged row has ended (its results.json says so): go on with the next. Any other
  # failure (a stop request included) ends the script.
  if [ "$status" -ne 0 ] && ! grep -qs '"status": "diverged"' "$dir/results.json"; then
    exit "$status"
  fi
done
