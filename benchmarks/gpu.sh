#!/usr/bin/env bash
# The GPU figures in one command: the MNIST benchmark on one CUDA GPU (not run yet: no GPU so far),
# with our speed options timed one by one, then notebook 08's solver benchmark (benchmarks/dpm_solver.py).
# Writes OUT/results.json, OUT/log.txt, OUT/nvidia-smi.csv, OUT/dpm_solver.txt and OUT/dpm-solver-digits-*.json.
#
#   bash benchmarks/gpu.sh OUT [more options for benchmarks/run.py, e.g. --compile-ablation]
#
# Needs: torch with CUDA, diffusers (pip install -e ".[bench]"), and the MNIST test set (the two
# t10k-*.gz IDX files) in $MNIST_ROOT, ../shared/data/mnist, shared/data/mnist or
# ~/.cache/diffusion_lib/mnist. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/bench-gpu}"
shift || true
mkdir -p "$OUT"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

ROOT=""
for c in "${MNIST_ROOT:-}" ../shared/data/mnist shared/data/mnist "$HOME/.cache/diffusion_lib/mnist"; do
  if [ -n "$c" ] && [ -f "$c/t10k-images-idx3-ubyte.gz" -o -f "$c/t10k-images-idx3-ubyte" ]; then ROOT="$c"; break; fi
done
if [ -z "$ROOT" ]; then echo "gpu.sh: MNIST test set not found; set MNIST_ROOT to its folder" >&2; exit 1; fi

"$PY" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu.sh: torch sees no CUDA GPU (torch " + torch.__version__ + ")")
try:
    import diffusers  # noqa: F401
except ImportError:
    sys.exit('gpu.sh: diffusers is missing: pip install -e ".[bench]"')
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true

PYTHONUNBUFFERED=1 "$PY" benchmarks/run.py --data mnist --data-root "$ROOT" --device cuda --ablations \
    --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"

# Notebook 08: FD against network calls for DDIM and DPM-Solver++(2M) on the shipped digits model, on the GPU
# (5 seeds, n = 1,000, DDPM-1000 as reference; writes OUT/dpm-solver-digits-DATE.json, not the notebook's copy).
PYTHONUNBUFFERED=1 "$PY" benchmarks/dpm_solver.py --device cuda --no-assets --out-dir "$OUT" 2>&1 \
    | tee "$OUT/dpm_solver.txt"
