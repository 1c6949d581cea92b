"""Shared fixtures: the personas (healthchecks style: owner, member, outsider) and a real Celery worker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from annotations.models import Profile, Rater, StudyMembership
from annotations.services.studies import study_create

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple-42"


def make_user(django_user_model, username: str, role: str, **extra):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD, **extra)
    Profile.objects.create(user=user, role=role)
    if role == Profile.Role.CLINICIAN:
        Rater.objects.create(kind=Rater.Kind.CLINICIAN, label=username, user=user)
    return user


@pytest.fixture
def researcher(django_user_model):
    return make_user(django_user_model, "alice", Profile.Role.RESEARCHER)


@pytest.fixture
def other_researcher(django_user_model):
    return make_user(django_user_model, "bob", Profile.Role.RESEARCHER)


@pytest.fixture
def admin_user(django_user_model):
    return make_user(django_user_model, "root", Profile.Role.ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def clinician(django_user_model):
    return make_user(django_user_model, "carol", Profile.Role.CLINICIAN)


@pytest.fixture
def other_clinician(django_user_model):
    return make_user(django_user_model, "dave", Profile.Role.CLINICIAN)


@pytest.fixture
def study(researcher, clinician):
    created = study_create(slug="s1", title="Study one", owner=researcher, overlap_k=2)
    StudyMembership.objects.create(study=created, user=clinician, role=StudyMembership.Role.CLINICIAN)
    return created


@pytest.fixture(scope="session")
def judge_server():
    """The local OpenAI-compatible judge server (annotations/judges/testserver.py) on a free loopback port."""
    from annotations.judges.testserver import start_server_in_thread

    server = start_server_in_thread()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real worker process on Redis, using the test database. Tests that use it must be transactional."""
    from evalplatform.celery import app

    app.control.purge()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
    }
    log = open(Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp")) / "test-worker.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "evalplatform",
            "worker",
            "-Q",
            "default,gpu",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            break
        if process.poll() is not None:
            raise RuntimeError(f"The Celery worker exited early; see {log.name}")
    else:
        process.kill()
        raise RuntimeError(f"The Celery worker did not start within 60 s; see {log.name}")
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _database_url() -> str:
    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def live_server(live_server, django_db_setup, django_db_blocker):
    """pytest-django's live server; afterwards, end the database sessions its threads left open, so that the
    test database can be dropped cleanly."""
    yield live_server
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
