"""Production settings: refuse to start without SECRET_KEY; `check --deploy` clean; secure defaults.

Each check runs manage.py in a subprocess with a clean environment (no test settings leak in).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONG_SECRET = "prod-like-" + "k3y" * 20


def _manage(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "evalplatform.settings",
        "EVALPLATFORM_VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=120
    )


def test_it_refuses_to_start_without_a_secret_key(tmp_path):
    result = _manage(["check"], tmp_path, DEBUG="false", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_check_deploy_is_clean_with_production_like_environment(tmp_path):
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        DEBUG="false",
        SECRET_KEY=LONG_SECRET,
        ALLOWED_HOSTS="example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_defaults_are_secure(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS >= 31536000, 'script-src' in s.CONTENT_SECURITY_POLICY, s.AXES_FAILURE_LIMIT)"
    )
    result = _manage(
        ["shell", "-c", code], tmp_path, DEBUG="false", SECRET_KEY=LONG_SECRET, ALLOWED_HOSTS="example.org"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-7:] == ["False", "True", "True", "True", "True", "True", "5"]
