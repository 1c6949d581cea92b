#!/usr/bin/env bash
# DPO vs MODPO step cost on a ~0.5B model from a config; `--tiny` for the CPU smoke test.
# Usage: bench/gpu_check.sh [--tiny] [--steps N] [--batch-size B] [--strict] [--skip-checks] [--ddp-on-cpu] ...
# Also checks a full bf16 fine-tune keeps fp32 master weights, and with 2+ GPUs a 2-process DDP job against one
# process (skipped, saying so, with fewer GPUs).
#
# Interpreter: .venv/bin/python when its torch sees a GPU, or when there is no GPU at all (the smoke
# test). On a GPU machine whose .venv holds the CPU torch build, the system python3 with its own CUDA
# torch runs it, and gpu_check.py appends .venv's site-packages for transformers/trl/peft.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TRANSFORMERS_VERBOSITY=error HF_DATASETS_DISABLE_PROGRESS_BARS=1

venv_python=.venv/bin/python
has_gpu=false
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=true
fi

if [[ -x $venv_python ]] && { ! $has_gpu || $venv_python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; }; then
  exec "$venv_python" bench/gpu_check.py "$@"
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "gpu_check: no .venv/bin/python usable here and no python3" >&2
  exit 2
fi
if ! python3 -c 'import torch' 2>/dev/null; then
  echo "gpu_check: python3 ($(python3 --version 2>&1)) has no torch; install a CUDA torch build first" >&2
  exit 2
fi
if $has_gpu && ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_check: warning: python3's torch does not see the GPU" >&2
fi
if [[ -d .venv ]]; then
  site=$(ls -d .venv/lib/python3*/site-packages 2>/dev/null | head -n 1 || true)
  if [[ -n $site ]]; then
    export GPU_CHECK_EXTRA_SITE="$PWD/$site"
    venv_version=${site#.venv/lib/python}
    venv_version=${venv_version%%/*}
    here_version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [[ $venv_version == "$here_version" ]]; then
      export GPU_CHECK_SITE_MODE=prepend
    else
      export GPU_CHECK_SITE_MODE=append
      echo "gpu_check: warning: .venv is Python $venv_version, python3 is $here_version;" \
        "compiled packages from .venv (pyarrow, numpy) may fail to load" >&2
    fi
  fi
fi
exec python3 bench/gpu_check.py "$@"
