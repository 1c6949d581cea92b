#!/usr/bin/env bash
# make run: SQLite and the filesystem broker under var/, the web server and a real Celery worker.
# Served as in production (gunicorn, DEBUG off, static files by whitenoise), so a mistyped link shows the styled
# 404 page and never Django's debug page with the URL map. Only what plain http on localhost needs is relaxed:
# no redirect to https and no secure-only cookies (the browser would drop them over http).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
if [ ! -s var/secret_key ]; then
  .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key
  chmod 600 var/secret_key
fi
export SECRET_KEY="$(cat var/secret_key)" DEBUG="${DEBUG:-false}" DJANGO_SETTINGS_MODULE=evalplatform.settings
export ALLOWED_HOSTS="${ALLOWED_HOSTS:-127.0.0.1,localhost}" SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false \
  CSRF_COOKIE_SECURE=false SECURE_HSTS_SECONDS=0
PY=.venv/bin/python
$PY manage.py migrate --noinput
$PY manage.py demo_setup
$PY manage.py collectstatic --noinput -v 0  # whitenoise serves them from var/static
$PY -m celery -A evalplatform worker -Q default,gpu --concurrency 1 --pool solo --loglevel INFO \
  -B --schedule var/celerybeat-schedule \
  > var/worker.log 2>&1 &
worker=$!
# A local OpenAI-compatible judge server, so an LLM judge can be tried without a GPU or an account:
# models "prefer-longer" (a length-biased judge), "hash" (consistent under swap), "prefer-first" (position-biased).
JUDGE_PORT="${JUDGE_PORT:-8765}"
$PY -m annotations.judges.testserver --host 127.0.0.1 --port "$JUDGE_PORT" --latency-ms 20 > var/judge-server.log 2>&1 &
judge_server=$!
trap 'kill $worker $judge_server 2>/dev/null; wait $worker $judge_server 2>/dev/null; exit 0' INT TERM EXIT
echo "Worker started (log: var/worker.log). Demo judge endpoint: http://127.0.0.1:${JUDGE_PORT}/v1 (model prefer-longer or hash)."
echo "Serving http://127.0.0.1:${PORT:-8000}/ — Ctrl-C stops all three."
# Threads, so a slow page never holds a clinician's request; reports are computed by the worker, not here.
$PY -m gunicorn evalplatform.wsgi --bind "127.0.0.1:${PORT:-8000}" --workers 2 --threads 4 --timeout 120
