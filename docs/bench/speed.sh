#!/usr/bin/env bash
# The speed table: one training step (forward, backward, Adam) of organics
# (`cargo xtask bench`) against the repository's own PyTorch and JAX implementations
# (bench/), in interleaved rounds, so that a change of the machine's load reaches every
# row alike. Run from the repository root:
#
#   bash docs/bench/speed.sh                       # everything, 2 rounds
#   ROUNDS=1 ONLY=static bash docs/bench/speed.sh  # a quick subset
#
# It builds the workspace (and so the binary `cargo xtask` runs) and the Python
# environment (`bash bench/setup.sh`, idempotent; the first time it downloads ~4 GB), writes
# every benchmark's JSON line to docs/bench/speed-DATE.jsonl, one {"round", "load", "cmd",
# "result"} object a line after a {"meta"} line, and prints the markdown table
# (bench/table.py). A few minutes a round on 2 cores.
#
# Environment:
#   ROUNDS   number of rounds (default 2)
#   ONLY     comma-separated subset of smnist, static, learned (default all three); lstm
#            adds the LSTM baseline: ours (fused kernel, and Burn's autodiff) and PyTorch's,
#            at batch 256 and at the literature's batch 50
#   THREADS  threads of the PyTorch and JAX runs (default 2; organics uses every core)
#   OUT      the JSON-lines file (default docs/bench/speed-DATE.jsonl, or with a b, c, ...
#            suffix when that exists: a run never overwrites another)
#   ORGANICS_VENV  the virtualenv (default .venv, as bench/setup.sh)
set -euo pipefail

ROUNDS=${ROUNDS:-2}
ONLY=${ONLY:-smnist,static,learned}
THREADS=${THREADS:-2}
VENV=${ORGANICS_VENV:-.venv}
X=${CARGO_TARGET_DIR:-target}/debug/xtask
PY="$VENV/bin/python"

[ -f bench/bench.py ] || { echo "run from the repository root" >&2; exit 2; }
for part in ${ONLY//,/ }; do
  case $part in smnist | static | learned | lstm) ;; *)
    echo "ONLY: unknown part '$part' (smnist, static, learned, lstm)" >&2; exit 2 ;;
  esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# The whole workspace, not `-p xtask`: a -p build resolves other features and rebuilds Burn.
cargo build --quiet --workspace
ORGANICS_VENV="$VENV" bash bench/setup.sh >&2

if [ -z "${OUT:-}" ]; then
  OUT=docs/bench/speed-$(date +%F).jsonl
  for suffix in b c d e f g h i j k l m n o p q r s t u v w x y z; do
    [ -e "$OUT" ] || break
    OUT=docs/bench/speed-$(date +%F)$suffix.jsonl
  done
fi
[ -e "$OUT" ] && { echo "$OUT exists" >&2; exit 2; }

# Wraps JSON in Python rather than printf: the CPU's name and a failed command's output
# need escaping, and this checks that each result is one valid JSON object.
"$PY" - "$ROUNDS" "$ONLY" "$THREADS" >"$OUT" <<'EOF'
import datetime, json, os, platform, subprocess, sys
def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
cpu = platform.processor() or platform.machine()
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
print(json.dumps({"meta": {
    "date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu,
    "cpus": os.cpu_count(), "commit": sh("git", "rev-parse", "--short", "HEAD"),
    "uncommitted_changes": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
    "rounds": int(sys.argv[1]), "only": sys.argv[2], "peer_threads": int(sys.argv[3])}}))
EOF

failed=0
# row CMD...: run one benchmark (its progress goes to the terminal) and append its JSON
# line, wrapped with the round, the load average and the command, to $OUT.
row() {
  local load out rc=0
  load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
  echo "# round $round, load ${load:-?}: $*" >&2
  out=$("$@") || rc=$?
  if ! "$PY" -c '
import json, sys
rnd, load, cmd, rc, out = sys.argv[1:]
lines = [l for l in out.splitlines() if l.startswith("{")]
if rc != "0" or not lines:
    print(json.dumps({"round": int(rnd), "cmd": cmd, "error": f"exit status {rc}, no JSON result"}))
    sys.exit(1)
print(json.dumps({"round": int(rnd), "load": load, "cmd": cmd, "result": json.loads(lines[-1])}))
' "$round" "$load" "$*" "$rc" "$out" >>"$OUT"; then
    echo "# failed: $*" >&2
    failed=$((failed + 1))
  fi
}

S="--task smnist --hidden 128 --batch 256 --seq 784 --steps 3"
M="--batch 256 --steps 40"
L="--batch 256 --steps 4"
B="$PY bench/bench.py"
for round in $(seq 1 "$ROUNDS"); do
  if want smnist; then
    row $X bench $S
    row $X bench $S --gradients tensor
    row $X bench $S --gradients autodiff
    row $X bench $S --backend ndarray
    row $B --impl torch $S --threads "$THREADS"
    row $B --impl jax $S --threads "$THREADS"
  fi
  if want lstm; then
    # Batch 256 as the ORGaNICs rows, and batch 50, the LSTM literature's setting.
    for lb in 256 50; do
      LS="--task smnist --hidden 128 --batch $lb --seq 784 --steps 3"
      row $X bench --model lstm $LS
      row $B --impl torch-lstm $LS --threads "$THREADS"
    done
    row $X bench --model lstm --task smnist --hidden 128 --batch 50 --seq 784 --steps 1 \
      --gradients autodiff
  fi
  if want static; then
    row $X bench --task mnist $M
    row $X bench --task mnist $M --gradients autodiff --burn-adam
    row $X bench --task mnist $M --backend ndarray
    row $B --impl torch --task static $M --threads "$THREADS"
    row $B --impl jax --task static $M --threads "$THREADS"
  fi
  if want learned; then
    row $X bench --task mnist --learned-recurrence $L
    row $B --impl torch --task static --learned-wr $L --threads "$THREADS"
    row $B --impl jax --task static --learned-wr $L --threads "$THREADS"
  fi
done

echo
"$PY" bench/table.py "$OUT"
echo
echo "results: $OUT"
[ "$failed" -eq 0 ] || { echo "$failed benchmark(s) gave no result" >&2; exit 1; }
