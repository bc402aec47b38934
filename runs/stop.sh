#!/usr/bin/env bash
# Stops the training that runs/run.sh started at the next epoch boundary, so that no
# epoch's work is lost: it waits until the running row has written the checkpoint of an
# epoch newer than the one it had when called (model, optimizer and scheduler), then sends
# the run the same Ctrl-C a terminal would. The run then stops within one training step and
# runs/run.sh ends with it (it does not start the next row). Commit runs/ afterwards.
#
#   bash runs/stop.sh              # wait for the next epoch boundary (at most 2 hours)
#   TIMEOUT=600 bash runs/stop.sh  # give up waiting after 10 minutes (nothing is sent)
#   NOW=1 bash runs/stop.sh        # stop at once (the epoch under way is lost)
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${TIMEOUT:-7200}

pid=$(pgrep -f -- " train .*--artifact-dir runs/" | head -n 1 || true)
if [ -z "$pid" ]; then
  echo "no training run of runs/ is running"
  exit 0
fi
dir=$(ps -o args= -p "$pid" | sed -n 's/.*--artifact-dir \(runs\/[^ ]*\).*/\1/p')
newest() {
  local e best=0 f
  for f in "$dir"/checkpoint/scheduler-*.bpk; do
    [ -e "$f" ] || continue
    e=${f##*-}
    e=${e%.bpk}
    [ -e "$dir/checkpoint/model-$e.bpk" ] && [ -e "$dir/checkpoint/optim-$e.bpk" ] &&
      [ "$e" -gt "$best" ] && best=$e
  done
  echo "$best"
}

if [ "${NOW:-0}" != 1 ]; then
  start=$(newest)
  echo "$dir: newest checkpoint epoch $start; waiting for the next one (process $pid)"
  waited=0
  while [ "$(newest)" -le "$start" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the run ended by itself"
      exit 0
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
      echo "no new checkpoint after ${TIMEOUT}s; nothing sent" >&2
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
fi
kill -INT "$pid"
echo "$dir: stop sent after the checkpoint of epoch $(newest)"
