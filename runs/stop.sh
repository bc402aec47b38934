#!/usr/bin/env bash
# Stops the training that runs/run.sh started at the next epoch boundary, so that no
# epoch's work is lost: for each row that is training (several may, side by side) it waits
# until the row has written the checkpoint of an epoch newer than the one it had when
# called (model, optimizer and scheduler), then sends the run the same Ctrl-C a terminal
# would. The run then stops within one training step and the runs/run.sh that started it
# ends with it (it does not start the next row). Commit runs/ afterwards.
#
#   bash runs/stop.sh                    # every running row, each at its next epoch boundary
#   bash runs/stop.sh smnist-lstm128     # only these rows
#   TIMEOUT=600 bash runs/stop.sh        # give up waiting after 10 minutes (nothing is sent)
#   NOW=1 bash runs/stop.sh              # stop at once (the epochs under way are lost)
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${TIMEOUT:-7200}

# The newest epoch of $1 (a row's folder) whose three checkpoint files all exist.
newest() {
  local e best=0 f
  for f in "$1"/checkpoint/scheduler-*.bpk; do
    [ -e "$f" ] || continue
    e=${f##*-}
    e=${e%.bpk}
    [ -e "$1/checkpoint/model-$e.bpk" ] && [ -e "$1/checkpoint/optim-$e.bpk" ] &&
      [ "$e" -gt "$best" ] && best=$e
  done
  echo "$best"
}

# Stops process $1, training row folder $2, after its next checkpoint.
stop_one() {
  local pid=$1 dir=$2 start waited=0
  if [ "${NOW:-0}" != 1 ]; then
    start=$(newest "$dir")
    echo "$dir: newest checkpoint epoch $start; waiting for the next one (process $pid)"
    while [ "$(newest "$dir")" -le "$start" ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "$dir: the run ended by itself"
        return 0
      fi
      if [ "$waited" -ge "$TIMEOUT" ]; then
        echo "$dir: no new checkpoint after ${TIMEOUT}s; nothing sent" >&2
        return 1
      fi
      sleep 5
      waited=$((waited + 5))
    done
  fi
  kill -INT "$pid"
  echo "$dir: stop sent after the checkpoint of epoch $(newest "$dir")"
}

found=0
failed=0
waiting=()
for pid in $(pgrep -f -- " train .*--artifact-dir runs/" || true); do
  dir=$(ps -o args= -p "$pid" | sed -n 's/.*--artifact-dir \(runs\/[^ ]*\).*/\1/p')
  [ -n "$dir" ] || continue
  if [ $# -gt 0 ]; then
    wanted=0
    for row in "$@"; do [ "runs/$row" = "$dir" ] && wanted=1; done
    [ "$wanted" = 1 ] || continue
  fi
  found=1
  stop_one "$pid" "$dir" &
  waiting+=($!)
done
if [ "$found" = 0 ]; then
  echo "no training run of runs/ is running${1:+ for the rows named}"
  exit 0
fi
for w in "${waiting[@]}"; do wait "$w" || failed=1; done
exit "$failed"
