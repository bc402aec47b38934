#!/usr/bin/env bash
# Trains (or resumes) the paper's Table 2 runs (with a second psMNIST row on the authors'
# later settings) and the learned-W_r rows of Table 1, one after another, each in
# runs/<row>/. A finished row (it has results.json) is skipped, so running
# this again after any stop, on any machine, continues where the committed checkpoints
# left off.
#
#   bash runs/run.sh                 # every row, in order
#   bash runs/run.sh smnist-organics64 psmnist-organics64   # only these rows
#
# Table 2 settings (docs/RESULTS.md, "Paper Table 2"): the paper's Adam lr 0.01, weight
# decay 1e-5, batch 256, lr x 0.8 every 30 epochs, no gradient clipping, 57,000 / 3,000
# split; at most 300 epochs (the authors' 128-unit job scripts), stopped early once the
# validation accuracy has not improved for 90 epochs (three decay periods).
# psmnist-organics64-authors: the settings of the authors' final 64-unit psMNIST job scripts
# instead (lr 0.005, x 0.8 every 50 epochs, 500 epochs, step ratios r_max 0.05 / 0.01 / 0.1
# for y / a / b), stopped after 150 epochs (three decay periods) without improvement.
# The LSTM baseline (128 units): the literature's settings (docs/RESULTS.md, "The LSTM
# baseline's settings"): RMSprop lr 1e-3, batch 50, gradient-norm clipping at 1, forget-gate
# bias 1, no weight decay or decay schedule, at most 200 epochs, patience 5.
# Table 1 settings: the static model's defaults (Adam lr 1e-3, weight decay 1e-5, batch
# 256) with a learned W_r (Algorithm 1, 10 iterations); at most 200 epochs (the paper's
# budget), stopped early after 20 epochs without a better validation accuracy. The
# authors-gate row trains the two-layer model with the authors' code's `1 − a` in place of
# the circuit's `1 − √a` (docs/MODEL.md section 11) for 30 epochs, to compare with the
# first 30 epochs of mnist-learned-128-64 (same seed, so the same data order).
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
TABLE2="--epochs 300 --patience 90"
TABLE1="--task mnist --learned-recurrence --epochs 200 --patience 20"
AUTHORS_PSMNIST="--lr 0.005 --lr-step 50 --epochs 500 --patience 150 --r-max-y 0.05 --r-max-a 0.01 --r-max-b 0.1"
LSTM="--model lstm --hidden 128 --optimizer rmsprop --lr 0.001 --batch-size 50 --clip 1 --forget-bias 1 --weight-decay 0 --lr-gamma 1 --epochs 200 --patience 5"

# row name, then its flags; the order is the order of training.
ROWS=(
  "smnist-organics64|--task smnist --hidden 64 $TABLE2"
  "psmnist-organics64|--task psmnist --hidden 64 $TABLE2"
  "psmnist-organics64-authors|--task psmnist --hidden 64 $AUTHORS_PSMNIST"
  "smnist-lstm128|--task smnist $LSTM"
  "psmnist-lstm128|--task psmnist $LSTM"
  "smnist-organics64-fixed|--task smnist --hidden 64 --fixed-time-constants $TABLE2"
  "psmnist-organics64-fixed|--task psmnist --hidden 64 --fixed-time-constants $TABLE2"
  "smnist-organics128|--task smnist --hidden 128 $TABLE2"
  "psmnist-organics128|--task psmnist --hidden 128 $TABLE2"
  "smnist-organics128-fixed|--task smnist --hidden 128 --fixed-time-constants $TABLE2"
  "psmnist-organics128-fixed|--task psmnist --hidden 128 --fixed-time-constants $TABLE2"
  "mnist-learned-128-64|$TABLE1"
  "mnist-learned-128-64-authors-gate|--task mnist --learned-recurrence --linear-gate --epochs 30"
  "mnist-learned-80|$TABLE1 --layers 80"
  "mnist-learned-50|$TABLE1 --layers 50"
)

wanted() { [ $# -eq 1 ] && return 0; local r; for r in "${@:2}"; do [ "$r" = "$1" ] && return 0; done; return 1; }

for row in "${ROWS[@]}"; do
  name=${row%%|*}
  flags=${row#*|}
  wanted "$name" "$@" || continue
  dir=runs/$name
  if grep -qs '"status": "finished"' "$dir/results.json"; then
    echo "$name: finished"
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
  nice -n 19 ${PIN[@]+"${PIN[@]}"} $XTASK train $flags --artifact-dir "$dir" $resume >>"$dir/train.log" 2>&1
  echo "== $(date -u +%FT%TZ) $name: exit 0" | tee -a "$dir/train.log"
done
