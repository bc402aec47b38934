#!/usr/bin/env bash
# Installs the PyTorch and JAX implementations' dependencies (bench/requirements.txt)
# into a virtualenv inside the repository, then prints the versions.
#
#   bash bench/setup.sh                   # -> .venv/ at the repository root
#   ORGANICS_VENV=/elsewhere bash bench/setup.sh
#   PYTHON=python3.11 bash bench/setup.sh # the interpreter that creates the venv
#
# Idempotent: a venv that already holds the pinned versions is left alone, so running
# it again costs a few seconds. The torch wheel pulls in the NVIDIA CUDA libraries
# (~4 GB to download, ~6 GB installed) even on a machine without a GPU; see
# requirements.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${ORGANICS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
REQ="$HERE/requirements.txt"

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $("$PY" --version 2>&1)" >&2
  "$PY" -m venv "$VENV"
fi

# Exit 0 when every pin of requirements.txt is installed at its exact version.
# torch reports a local version (2.15.0+cu132), which counts as 2.15.0.
pinned() {
  "$VENV/bin/python" - "$REQ" <<'PYEOF'
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if have.split("+")[0] != want:
        sys.exit(1)
PYEOF
}

if pinned; then
  echo "$VENV already has the pinned versions" >&2
else
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ"
  pinned || { echo "installed versions differ from $REQ" >&2; exit 1; }
fi

"$VENV/bin/python" - <<'PYEOF'
import platform
import jax, jaxlib, numpy, optax, torch
print(f"python {platform.python_version()} | torch {torch.__version__} "
      f"(cuda available: {torch.cuda.is_available()}) | jax {jax.__version__} "
      f"jaxlib {jaxlib.__version__} {jax.devices()} | optax {optax.__version__} "
      f"| numpy {numpy.__version__}")
PYEOF
echo "python: $VENV/bin/python" >&2
