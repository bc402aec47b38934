#!/bin/bash
# The interleaved Speed table of the README: two rounds, 2 threads each.
# Run from the repository root after `cargo build -p xtask` (the binary `cargo xtask`
# runs) and `bash ../shared/peer/setup.sh`; output as in speed-2026-11-23b.log.
X=${CARGO_TARGET_DIR:-target}/debug/xtask
P="/tmp/peer-venv/bin/python bench.py"
S="--task smnist --hidden 128 --batch 256 --seq 784 --steps 3"
M="--batch 256 --steps 40"
for round in 1 2; do
  echo "# round $round $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  $X bench $S
  $X bench $S --gradients tensor
  $X bench $S --gradients autodiff
  $X bench $S --backend ndarray
  (cd ../shared/peer && $P --impl torch $S --threads 2)
  (cd ../shared/peer && $P --impl jax $S --threads 2)
  $X bench --task mnist $M
  $X bench --task mnist $M --gradients autodiff --burn-adam
  $X bench --task mnist $M --backend ndarray
  (cd ../shared/peer && $P --impl torch --task static $M --threads 2)
  (cd ../shared/peer && $P --impl jax --task static $M --threads 2)
done
