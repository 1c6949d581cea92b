"""Settings for the test suite: PostgreSQL and Redis, as in production (never SQLite or eager mode)."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/evalplatform")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/6")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("EVALPLATFORM_VAR_DIR", "/tmp/evalplatform-test-var")
# Tests build their tiny base models under pytest's temporary directories.
os.environ.setdefault("MODEL_ROOTS", tempfile.gettempdir())

from evalplatform.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# The worker's log and whitenoise's static root live here; make sure they exist on a fresh machine.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
