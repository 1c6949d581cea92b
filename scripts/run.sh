#!/usr/bin/env bash
# make run: SQLite and the filesystem broker under var/, the web server and a real Celery worker.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
if [ ! -s var/secret_key ]; then
  .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key
  chmod 600 var/secret_key
fi
export SECRET_KEY="$(cat var/secret_key)" DEBUG="${DEBUG:-true}" DJANGO_SETTINGS_MODULE=evalplatform.settings
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py demo_setup
$PY -m celery -A evalplatform worker -Q default,gpu --concurrency 1 --pool solo --loglevel INFO \
  -B --schedule var/celerybeat-schedule \
  > var/worker.log 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null; exit 0' INT TERM EXIT
echo "Worker started (log: var/worker.log). Serving http://127.0.0.1:${PORT:-8000}/ — Ctrl-C stops both."
$PY manage.py runserver "127.0.0.1:${PORT:-8000}"
