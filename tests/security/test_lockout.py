"""Failed-login lockout without denial of service: the pair (username, address) waits, with a growing delay;
the client address comes from X-Forwarded-For only behind the proxy, for the lockout and the throttles alike;
admins and study owners see and lift pauses, audited."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

from annotations.lockout import client_address, lockout_delay_seconds, lockout_for
from annotations.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
WRONG = "definitely-not-the-password-81"
ADDRESS_A = "10.0.0.1"
ADDRESS_B = "10.0.0.2"


def _fail(client: Client, username: str, times: int = 5) -> list[int]:
    return [
        client.post("/accounts/login/", {"username": username, "password": WRONG}).status_code for _ in range(times)
    ]


def _log_in(client: Client, username: str):
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD})


def _age_failures(username: str, address: str, seconds: int) -> None:
    """Pretend the pair's last failure happened `seconds` ago (its wait is measured from it)."""
    AccessAttempt.objects.filter(username=username, ip_address=address).update(
        attempt_time=timezone.now() - timedelta(seconds=seconds)
    )


def _without_clock(page: str) -> str:
    return re.sub(r"\(after \d\d:\d\d UTC\)", "", page)


def test_failures_for_an_unknown_username_do_not_lock_a_colleague_on_the_same_address(researcher):
    clinic = Client(REMOTE_ADDR=ADDRESS_A)
    assert _fail(clinic, "nobody")[-1] == 429
    response = _log_in(clinic, researcher.username)
    assert response.status_code == 302
    assert clinic.session["_auth_user_id"] == str(researcher.pk)


def test_failures_on_one_address_do_not_lock_the_same_user_on_another(researcher):
    assert _fail(Client(REMOTE_ADDR=ADDRESS_A), researcher.username)[-1] == 429
    assert _log_in(Client(REMOTE_ADDR=ADDRESS_A), researcher.username).status_code == 429
    elsewhere = Client(REMOTE_ADDR=ADDRESS_B)
    assert _log_in(elsewhere, researcher.username).status_code == 302
    assert elsewhere.session["_auth_user_id"] == str(researcher.pk)


def test_the_wait_starts_short_and_doubles_with_each_failure_after_it(researcher, settings):
    client = Client(REMOTE_ADDR=ADDRESS_A)
    _fail(client, researcher.username)
    first = lockout_for(username=researcher.username, ip_address=ADDRESS_A)
    assert first.until - first.last_failure == timedelta(seconds=settings.LOCKOUT_FIRST_DELAY_SECONDS)

    _age_failures(researcher.username, ADDRESS_A, settings.LOCKOUT_FIRST_DELAY_SECONDS + 1)
    assert lockout_for(username=researcher.username, ip_address=ADDRESS_A) is None
    assert _fail(client, researcher.username, times=1) == [429]  # one more failure: paused again, twice as long
    second = lockout_for(username=researcher.username, ip_address=ADDRESS_A)
    assert second.until - second.last_failure == timedelta(seconds=2 * settings.LOCKOUT_FIRST_DELAY_SECONDS)

    _age_failures(researcher.username, ADDRESS_A, 2 * settings.LOCKOUT_FIRST_DELAY_SECONDS + 1)
    assert _log_in(client, researcher.username).status_code == 302
    assert not AccessAttempt.objects.filter(username=researcher.username).exists()  # success forgets the failures


def test_the_delay_is_capped():
    delays = [lockout_delay_seconds(n, limit=5, first=60, maximum=3600) for n in (0, 4, 5, 6, 7, 11, 12, 500)]
    assert delays == [0, 0, 60, 120, 240, 3600, 3600, 3600]


def test_retrying_during_the_wait_does_not_extend_it(researcher):
    client = Client(REMOTE_ADDR=ADDRESS_A)
    _fail(client, researcher.username)
    before = lockout_for(username=researcher.username, ip_address=ADDRESS_A)
    assert _log_in(client, researcher.username).status_code == 429
    assert _fail(client, researcher.username, times=3) == [429, 429, 429]
    assert lockout_for(username=researcher.username, ip_address=ADDRESS_A) == before


def test_the_pause_says_when_to_retry_and_reads_the_same_for_real_and_unknown_usernames(researcher):
    pages = {}
    for username in (researcher.username, "nobody-at-all"):
        client = Client(REMOTE_ADDR=ADDRESS_A)
        _fail(client, username, times=4)
        locked = client.post("/accounts/login/", {"username": username, "password": WRONG})
        assert locked.status_code == 429
        assert locked["Retry-After"] == "60"
        pages[username] = locked.content.decode()
        api = client.post("/api/v1/auth/token", {"username": username, "password": WRONG})
        assert api.status_code == 429
        assert api.json()["error"]["code"] == "locked_out"
        assert re.search(r"try again in \d+ seconds", api.json()["error"]["message"])
        assert 0 < api.json()["error"]["details"]["retry_after_seconds"] <= 60
    assert "Try again in 60 seconds (after " in pages[researcher.username]
    assert _without_clock(pages[researcher.username]) == _without_clock(pages["nobody-at-all"])


def test_a_forged_x_forwarded_for_does_not_buy_a_fresh_throttle_bucket(settings):
    assert settings.BEHIND_TLS_PROXY is False
    client = Client()
    statuses = [
        client.post("/api/v1/auth/token", {}, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(25)
    ]
    assert statuses[0] == 400
    assert statuses[-1] == 429  # AUTH_THROTTLE_RATE (20/min) per client, whatever the header says


def test_without_the_proxy_a_forged_x_forwarded_for_does_not_change_the_lockout_pair(researcher):
    client = Client(REMOTE_ADDR=ADDRESS_A)
    for n in range(5):
        client.post(
            "/accounts/login/",
            {"username": researcher.username, "password": WRONG},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        )
    assert lockout_for(username=researcher.username, ip_address=ADDRESS_A) is not None


def test_behind_the_proxy_the_client_is_the_address_the_trusted_proxy_appended(researcher, settings, rf):
    settings.BEHIND_TLS_PROXY = True
    settings.TRUSTED_PROXY_COUNT = 1
    request = rf.get("/", headers={"X-Forwarded-For": "6.6.6.6, 10.9.8.7"}, REMOTE_ADDR="192.168.0.10")
    assert client_address(request) == "10.9.8.7"  # the client wrote 6.6.6.6; the proxy appended 10.9.8.7
    assert client_address(rf.get("/", REMOTE_ADDR="192.168.0.10")) == "192.168.0.10"

    proxy = Client(REMOTE_ADDR="192.168.0.10")
    for _ in range(5):
        proxy.post(
            "/accounts/login/",
            {"username": researcher.username, "password": WRONG},
            headers={"X-Forwarded-For": ADDRESS_A},
        )
    assert lockout_for(username=researcher.username, ip_address=ADDRESS_A) is not None
    # Everyone else behind the same proxy still logs in.
    response = proxy.post(
        "/accounts/login/",
        {"username": researcher.username, "password": PASSWORD},
        headers={"X-Forwarded-For": ADDRESS_B},
    )
    assert response.status_code == 302


def test_an_admin_sees_every_pause_and_lifts_one_audited(admin_user, clinician):
    _fail(Client(REMOTE_ADDR=ADDRESS_A), clinician.username)
    _fail(Client(REMOTE_ADDR=ADDRESS_B), "nobody")
    admin = Client()
    admin.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    page = admin.get("/accounts/lockouts/").content.decode()
    assert clinician.username in page and "nobody" in page and ADDRESS_A in page

    response = admin.post("/accounts/lockouts/clear", {"username": clinician.username, "ip_address": ADDRESS_A})
    assert response.status_code == 302
    assert lockout_for(username=clinician.username, ip_address=ADDRESS_A) is None
    event = AuditEvent.objects.get(action="auth.lockout_clear")
    assert event.actor == admin_user and event.data["username"] == clinician.username
    assert _log_in(Client(REMOTE_ADDR=ADDRESS_A), clinician.username).status_code == 302


def test_a_study_owner_sees_and_lifts_only_their_members_pauses(world):
    _fail(Client(REMOTE_ADDR=ADDRESS_A), world.clinician.username)
    _fail(Client(REMOTE_ADDR=ADDRESS_A), world.other_clinician.username)
    owner = Client()
    owner.force_login(world.researcher, backend="django.contrib.auth.backends.ModelBackend")
    page = owner.get("/accounts/lockouts/").content.decode()
    assert world.clinician.username in page
    assert world.other_clinician.username not in page

    owner.post("/accounts/lockouts/clear", {"username": world.other_clinician.username, "ip_address": ADDRESS_A})
    assert lockout_for(username=world.other_clinician.username, ip_address=ADDRESS_A) is not None
    assert not AuditEvent.objects.filter(action="auth.lockout_clear").exists()

    clinician = Client()
    clinician.force_login(world.clinician, backend="django.contrib.auth.backends.ModelBackend")
    assert clinician.get("/accounts/lockouts/").status_code == 403
