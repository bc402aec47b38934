#!/usr/bin/env bash
# The GPU rows of docs/SPEED.md, on a machine with a GPU: one training step of each model on
# the wgpu backend (and the same on the CPU's flex backend, interleaved, for the ratio), then
# one full sMNIST epoch on wgpu and the time 300 such epochs would take. Run from the
# repository root:
#
#   bash docs/bench/gpu.sh                     # the table and the epoch
#   EPOCH=0 bash docs/bench/gpu.sh             # the table only
#
# It builds the workspace, writes each benchmark's JSON line to docs/bench/gpu-DATE.jsonl
# (a b, c, ... suffix when that exists) and prints a markdown table. wgpu needs a GPU driver
# (Vulkan, Metal or DX12); `cargo xtask bench --backend wgpu` refuses a software renderer
# unless SOFTWARE=1 (for trying the script where no GPU exists; the times then mean nothing).
#
# Environment:
#   ROUNDS    rounds of every row (default 2)
#   STEPS     timed steps per benchmark (default 3)
#   EPOCH     1: also train one sMNIST epoch on wgpu (default 1)
#   SEQ       sequence length of the sMNIST rows (default 784, the real one)
#   BATCH     batch size (default 256, the paper's)
#   SOFTWARE  1: accept a software wgpu adapter (lavapipe, llvmpipe)
#   OUT       the JSON-lines file
set -euo pipefail

ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
EPOCH=${EPOCH:-1}
SEQ=${SEQ:-784}
BATCH=${BATCH:-256}
SOFTWARE=${SOFTWARE:-0}

[ -f Cargo.toml ] && [ -d docs/bench ] || { echo "run from the repository root" >&2; exit 2; }
cargo build --workspace --locked --quiet
X=${CARGO_TARGET_DIR:-target}/debug/xtask

if [ -z "${OUT:-}" ]; then
  OUT=docs/bench/gpu-$(date -u +%F).jsonl
  for s in b c d e f g h; do [ -e "$OUT" ] || break; OUT=docs/bench/gpu-$(date -u +%F)$s.jsonl; done
fi
[ -e "$OUT" ] && { echo "$OUT exists; set OUT" >&2; exit 2; }

software=()
[ "$SOFTWARE" = 1 ] && software=(--allow-software-gpu)

# name | flags shared by both backends
ROWS=(
  "sMNIST n=64|--task smnist --hidden 64 --seq $SEQ"
  "sMNIST n=64, tensor-op BPTT|--task smnist --hidden 64 --seq $SEQ --gradients tensor"
  "sMNIST n=128|--task smnist --hidden 128 --seq $SEQ"
  "static W_r = I|--task mnist"
  "static learned W_r|--task mnist --learned-recurrence"
)

echo "{\"meta\": {\"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"batch\": $BATCH, \"steps\": $STEPS}}" > "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for row in "${ROWS[@]}"; do
    name=${row%%|*}
    read -r -a flags <<< "${row#*|}"
    for backend in wgpu flex; do
      extra=()
      [ "$backend" = wgpu ] && extra=("${software[@]}")
      echo "round $round: $name on $backend" >&2
      if line=$("$X" bench "${flags[@]}" --batch "$BATCH" --steps "$STEPS" --backend "$backend" "${extra[@]}" 2>/dev/null | tail -1); then
        printf '{"round": %d, "row": "%s", "backend": "%s", "result": %s}\n' "$round" "$name" "$backend" "$line" >> "$OUT"
      else
        printf '{"round": %d, "row": "%s", "backend": "%s", "error": true}\n' "$round" "$name" "$backend" >> "$OUT"
        echo "  failed: $X bench ${flags[*]} --backend $backend" >&2
      fi
    done
  done
done

epoch_seconds=""
if [ "$EPOCH" = 1 ]; then
  dir=artifacts/gpu-smnist-epoch
  echo "one sMNIST epoch (n = 64) on wgpu into $dir" >&2
  "$X" train --task smnist --hidden 64 --epochs 1 --backend wgpu "${software[@]}" --artifact-dir "$dir" --overwrite >&2
  epoch_seconds=$(python3 -c "import json; print(json.load(open('$dir/results.json'))['wall_seconds'])")
  printf '{"epoch": {"task": "smnist", "hidden": 64, "backend": "wgpu", "wall_seconds": %s}}\n' "$epoch_seconds" >> "$OUT"
fi

python3 - "$OUT" <<'PY'
import json, sys
rows, launches, epoch = {}, {}, None
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "epoch" in d:
        epoch = d["epoch"]
    if "round" not in d:
        continue
    rows.setdefault(d["row"], {}).setdefault(d["backend"], []).append(
        None if d.get("error") else d["result"]["sec_per_step"])
    if d["backend"] == "wgpu" and not d.get("error"):
        launches[d["row"]] = d["result"].get("kernel_launches_per_step")
fmt = lambda v: "failed" if v is None else (f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")
print("| step | wgpu, per round | flex, per round | wgpu ÷ flex | wgpu kernel launches per step |")
print("|---|---|---|---:|---:|")
for name, b in rows.items():
    g, c = b.get("wgpu", []), b.get("flex", [])
    ratios = [f"{x / y:.2f}" for x, y in zip(g, c) if x is not None and y is not None]
    n = launches.get(name)
    n = "-" if n is None else f"{n:,.0f}"
    print(f"| {name} | {' / '.join(map(fmt, g))} | {' / '.join(map(fmt, c))} | {' / '.join(ratios) or '-'} | {n} |")
if epoch:
    s = epoch["wall_seconds"]
    print(f"\nOne sMNIST epoch (n = 64, validation included) on wgpu: {s:.0f} s; 300 epochs: {300 * s / 3600:.1f} h.")
print(f"\nresults: {sys.argv[1]}")
PY
