#!/usr/bin/env bash
# make test: browser and services first, then the whole suite on PostgreSQL with a real Celery worker on Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the browser tests need: Chromium, and npm for axe-core.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "Missing: ${missing[*]}: sudo apt-get install ${missing[*]}" >&2; exit 1
  fi
fi
scripts/services.sh
# axe-core for the browser tests' accessibility checks: installed from the lock file, never fetched at run time.
if [ ! -f node_modules/axe-core/axe.min.js ]; then
  npm ci --silent --no-audit --no-fund
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# The slowest tests, listed at the end of every run, keep the suite's 15 minutes in view.
exec .venv/bin/pytest --durations=25 "$@"
