"""The permission matrix: every URL route × every persona → the HTTP status expected.

HOW TO ADD YOUR ROUTE (test_route_matrix.py fails for any named route missing here, and for entries whose
route no longer exists):

    ROUTES["my-url-name"] = [
        Check(
            method="get",                                   # "get" (default), "post", "patch", "put", "delete"
            kwargs=lambda w: {"slug": w.study.slug},        # URL kwargs built from the World (see conftest.py)
            data=lambda w: {"field": "value"},              # optional request body (JSON for /api/, form otherwise)
            expect=expect(anonymous=302, other_clinician=404, clinician=404,
                          other_researcher=404, researcher=200, admin=200),
        ),
    ]

- Key: the URL name (`name=` in path()). One entry may hold several Checks (e.g. GET list and POST create).
- `expect(...)` takes all six personas, keyword-only, so nothing is left out by accident. A value may be a
  tuple of acceptable statuses when a route legitimately answers either (use sparingly).
- The World (tests/security/conftest.py): `study` ("s1", owned by researcher; clinician is a member) and
  `other_study` ("s2", owned by other_researcher; other_clinician is a member); `system` (in s1),
  `comparison` (s1), `assignment` (clinician's leased assignment in s1, use `.public_id`), `other_assignment`
  (other_clinician's, in s2). Admin is a member of neither study. A lambda may create extra objects it needs
  with the ORM (e.g. an export row) and return kwargs pointing at them.
- Personas run in this order, least privileged first, each with a fresh client logged in by session:
  anonymous, other_clinician, clinician, other_researcher, researcher, admin. Writes by earlier personas are
  visible to later ones (one transaction per route), so put the data a write needs in `data`, and expect the
  result of running after the personas before.
- Every response a clinician persona gets (HTML or JSON) is also checked to contain no system name.
- A route whose kwargs cannot be built from the World: `ROUTES[name] = Skip("why, and what tests it instead")`.
- Conventions: HTML pages send anonymous users to the login page (302); the API answers anonymous with 401.
  A study (or an object in it) the persona may not see is 404, never 403, so URLs reveal nothing;
  403 means "you can see this but may not do that".
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PERSONAS = ("anonymous", "other_clinician", "clinician", "other_researcher", "researcher", "admin")
CLINICIAN_PERSONAS = ("clinician", "other_clinician")

Status = int | tuple[int, ...]


def expect(
    *,
    anonymous: Status,
    other_clinician: Status,
    clinician: Status,
    other_researcher: Status,
    researcher: Status,
    admin: Status,
) -> dict[str, Status]:
    return {
        "anonymous": anonymous,
        "other_clinician": other_clinician,
        "clinician": clinician,
        "other_researcher": other_researcher,
        "researcher": researcher,
        "admin": admin,
    }


@dataclass(frozen=True)
class Check:
    expect: dict[str, Status]
    method: str = "get"
    kwargs: Callable[[Any], dict[str, Any]] | None = None
    data: Callable[[Any], dict[str, Any]] | dict[str, Any] | None = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    reason: str


def s1(w) -> dict[str, Any]:
    return {"slug": w.study.slug}


# Presets for the common shapes; write a literal expect(...) whenever a route differs.
EVERYONE_200 = expect(
    anonymous=200, other_clinician=200, clinician=200, other_researcher=200, researcher=200, admin=200
)
# An HTML page of study s1 for its researchers (and admins).
STUDY_PAGE = expect(anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200)
# An HTML form post on study s1 that redirects back after doing (or refusing with a message) its work.
STUDY_FORM_POST = expect(
    anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=302, admin=302
)
# An API read of study s1 for its researchers (and admins).
STUDY_API_READ = expect(
    anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
)
# Admin-only HTML page / API.
ADMIN_PAGE = expect(anonymous=302, other_clinician=403, clinician=403, other_researcher=403, researcher=403, admin=200)
ADMIN_API_READ = expect(
    anonymous=401, other_clinician=403, clinician=403, other_researcher=403, researcher=403, admin=200
)
ANY_USER_PAGE = expect(
    anonymous=302, other_clinician=200, clinician=200, other_researcher=200, researcher=200, admin=200
)
ANY_USER_FORM_POST = expect(
    anonymous=302, other_clinician=302, clinician=302, other_researcher=302, researcher=302, admin=302
)
ANY_USER_API = expect(
    anonymous=401, other_clinician=200, clinician=200, other_researcher=200, researcher=200, admin=200
)
# A clinician workspace page (or autosave) of clinician's own pair or study in s1: no one else reaches it.
CLINICIAN_PAGE = expect(
    anonymous=302, other_clinician=404, clinician=200, other_researcher=404, researcher=404, admin=404
)
# A clinician workspace form post on clinician's own pair in s1: it redirects on (next pair, home or done).
CLINICIAN_FORM_POST = expect(
    anonymous=302, other_clinician=404, clinician=302, other_researcher=404, researcher=404, admin=404
)
# The clinician API on clinician's own pair or study in s1.
CLINICIAN_API = expect(
    anonymous=401, other_clinician=404, clinician=200, other_researcher=404, researcher=404, admin=404
)


ROUTES: dict[str, list[Check] | Skip] = {
    # --- authentication and docs ---------------------------------------------------------------------------
    "login": [Check(expect=EVERYONE_200)],
    "logout": [
        Check(
            method="post",
            expect=expect(
                anonymous=302, other_clinician=302, clinician=302, other_researcher=302, researcher=302, admin=302
            ),
        )
    ],
    "api-schema": [Check(expect=EVERYONE_200)],
    "api-docs": [Check(expect=EVERYONE_200)],
    "healthz": [Check(expect=EVERYONE_200)],
    "home": [
        Check(
            expect=expect(
                anonymous=302, other_clinician=302, clinician=302, other_researcher=302, researcher=302, admin=302
            )
        )
    ],
    # --- researcher pages (foundation) ---------------------------------------------------------------------
    "study-list": [
        Check(
            expect=expect(
                anonymous=302, other_clinician=403, clinician=403, other_researcher=200, researcher=200, admin=200
            )
        )
    ],
    "study-detail": [Check(kwargs=s1, expect=STUDY_PAGE)],
    "study-import": [Check(method="post", kwargs=s1, expect=STUDY_FORM_POST)],
    "study-build-comparisons": [Check(method="post", kwargs=s1, data={"strategy": "bogus"}, expect=STUDY_FORM_POST)],
    "study-open": [Check(method="post", kwargs=s1, expect=STUDY_FORM_POST)],
    "study-close": [Check(method="post", kwargs=s1, expect=STUDY_FORM_POST)],
    "screening-resolve": [
        Check(
            method="post",
            # A hit id from s1; other personas must not learn it exists.
            kwargs=lambda w: {"slug": w.study.slug, "hit_id": _screening_hit(w).pk},
            data={"resolution": "dismissed"},
            expect=STUDY_FORM_POST,
        )
    ],
    # --- researcher API (foundation) -----------------------------------------------------------------------
    "api-study-list": [
        Check(expect=ANY_USER_API),  # everyone gets a list, filtered to what they may see (asserted elsewhere)
        Check(
            method="post",
            data={"slug": "new-study", "title": "New"},
            # After other_researcher made it, the slug is taken: 409 (the answer to a race on one slug, too).
            expect=expect(
                anonymous=401, other_clinician=403, clinician=403, other_researcher=201, researcher=409, admin=409
            ),
        ),
    ],
    "api-study-detail": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-study-import": [
        Check(
            method="post",
            kwargs=s1,
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        )
    ],
    "api-study-build-comparisons": [
        Check(
            method="post",
            kwargs=s1,
            data={"strategy": "bogus"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        )
    ],
    "api-study-open": [
        Check(
            method="post",
            kwargs=s1,
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
            ),
        )
    ],
    "api-study-close": [
        Check(
            method="post",
            kwargs=s1,
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
            ),
        )
    ],
    "api-study-screening-hits": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-study-screening-resolve": [
        Check(
            method="post",
            kwargs=lambda w: {"slug": w.study.slug, "hit_id": _screening_hit(w).pk},
            data={"resolution": "dismissed"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
            ),
        )
    ],
    "api-study-comparisons": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-study-judges": [Check(kwargs=s1, expect=STUDY_API_READ)],
    # --- accounts and security (this module's owner: the security helper) ----------------------------------
    "api-auth-token": [
        Check(
            method="post",
            data={"username": "nobody", "password": "wrong-password-123"},
            # The same wrong login six times: the fifth failure (AXES_FAILURE_LIMIT) locks the username out.
            expect=expect(
                anonymous=400, other_clinician=400, clinician=400, other_researcher=400, researcher=429, admin=429
            ),
        )
    ],
    "api-me": [Check(expect=ANY_USER_API)],
    "api-me-token": [
        Check(
            method="delete",
            expect=expect(
                anonymous=401, other_clinician=204, clinician=204, other_researcher=204, researcher=204, admin=204
            ),
        )
    ],
    "api-study-members": [
        Check(kwargs=s1, expect=STUDY_API_READ),
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {"username": w.other_clinician.username, "role": "clinician"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
            ),
        ),
    ],
    "api-study-member": [
        Check(
            method="delete",
            kwargs=lambda w: {"slug": w.study.slug, "username": w.clinician.username},
            # The researcher removes the clinician, so the admin then finds no such member.
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=204, admin=404
            ),
        )
    ],
    "api-study-systems": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-accounts": [
        Check(expect=ADMIN_API_READ),
        Check(
            method="post",
            data={"username": "newcomer", "email": "new@example.org", "role": "clinician"},
            expect=expect(
                anonymous=401, other_clinician=403, clinician=403, other_researcher=403, researcher=403, admin=201
            ),
        ),
    ],
    "api-account-role": [
        Check(
            method="post",
            kwargs=lambda w: {"username": w.other_researcher.username},
            data={"role": "admin"},
            expect=expect(
                anonymous=401, other_clinician=403, clinician=403, other_researcher=403, researcher=403, admin=200
            ),
        )
    ],
    "api-invitations": [
        Check(expect=ADMIN_API_READ),
        Check(
            method="post",
            data={"email": "invitee@example.org", "role": "clinician", "study": "s1"},
            expect=expect(
                anonymous=401, other_clinician=403, clinician=403, other_researcher=403, researcher=403, admin=201
            ),
        ),
    ],
    "api-audit-events": [Check(expect=ADMIN_API_READ)],
    # My account, API tokens, password reset links, lockouts (the security helper).
    "account": [Check(expect=ANY_USER_PAGE)],
    "password-change": [Check(expect=ANY_USER_PAGE)],
    "account-token-create": [Check(method="post", data={"name": "matrix"}, expect=ANY_USER_FORM_POST)],
    "account-token-revoke": [
        Check(
            method="post",
            # A fresh token of the researcher's for each persona: only its owner revokes it.
            kwargs=lambda w: {"token_id": _researcher_token(w).pk},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=302, admin=404
            ),
        )
    ],
    "api-me-tokens": [
        Check(expect=ANY_USER_API),
        Check(
            method="post",
            data={"name": "matrix"},
            expect=expect(
                anonymous=401, other_clinician=201, clinician=201, other_researcher=201, researcher=201, admin=201
            ),
        ),
    ],
    "api-me-token-detail": [
        Check(
            method="delete",
            kwargs=lambda w: {"token_id": _researcher_token(w).pk},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=204, admin=404
            ),
        )
    ],
    "password-reset-link-create": [
        Check(
            method="post",
            # The clinician of s1: its researchers and admins may make a link; no one else learns the account exists.
            kwargs=lambda w: {"user_id": w.clinician.pk},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=302, admin=302
            ),
        )
    ],
    "password-reset": [
        Check(kwargs=lambda w: {"token": _reset_token(w)}, expect=EVERYONE_200),
        Check(
            kwargs=lambda w: {"token": "not-a-real-token"},
            expect=expect(
                anonymous=404, other_clinician=404, clinician=404, other_researcher=404, researcher=404, admin=404
            ),
        ),
    ],
    # Admins and study owners (other_researcher owns s2, researcher owns s1).
    "lockout-list": [
        Check(
            expect=expect(
                anonymous=302, other_clinician=403, clinician=403, other_researcher=200, researcher=200, admin=200
            )
        )
    ],
    "lockout-clear": [
        Check(
            method="post",
            data={"username": "nobody", "ip_address": "10.0.0.1"},
            expect=expect(
                anonymous=302, other_clinician=403, clinician=403, other_researcher=302, researcher=302, admin=302
            ),
        )
    ],
    "invitation-accept": [
        Check(kwargs=lambda w: {"token": _invitation(w).token}, expect=EVERYONE_200),
        Check(
            kwargs=lambda w: {"token": "not-a-real-token"},
            expect=expect(
                anonymous=404, other_clinician=404, clinician=404, other_researcher=404, researcher=404, admin=404
            ),
        ),
    ],
    "audit-log": [Check(expect=ADMIN_PAGE)],
    "audit-export-csv": [Check(expect=ADMIN_PAGE)],
    "audit-export-json": [Check(expect=ADMIN_PAGE)],
    "invitation-list": [Check(expect=ADMIN_PAGE)],
    "study-members": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {"username": w.other_clinician.username, "role": "clinician"},
            expect=STUDY_FORM_POST,
        ),
    ],
    "study-member-remove": [
        Check(
            method="post",
            kwargs=lambda w: {"slug": w.study.slug, "user_id": w.clinician.pk},
            # The researcher removes the clinician, so the admin then finds no such member.
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=302, admin=404
            ),
        )
    ],
    # --- agreement and results reports (annotations/views/reports.py, annotations/api/reports.py) ------------
    # Clinicians, members of s1 or not, never reach a report (404). Reports are computed on a worker, never in
    # the request: the page queues one, a download of a report not computed yet redirects to the page (302),
    # and the API answers 202 while it is queued.
    "study-report": [Check(kwargs=s1, query={"resamples": "0"}, expect=STUDY_PAGE)],
    "study-report-print": [Check(kwargs=s1, query={"resamples": "0"}, expect=STUDY_PAGE)],
    "study-report-status": [Check(kwargs=lambda w: _report_snapshot_kwargs(w), expect=STUDY_PAGE)],
    "study-report-download": [
        Check(
            kwargs=lambda w: {"slug": w.study.slug, "file_format": "csv"},
            query={"resamples": "0"},
            expect=STUDY_FORM_POST,
        ),
        Check(
            kwargs=lambda w: {"slug": w.study.slug, "file_format": "json"},
            query={"resamples": "0"},
            expect=STUDY_FORM_POST,
        ),
    ],
    "api-study-report": [
        Check(
            kwargs=s1,
            query={"resamples": "0"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=202, admin=202
            ),
        )
    ],
    "api-study-report-csv": [
        Check(
            kwargs=s1,
            query={"resamples": "0"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=202, admin=202
            ),
        )
    ],
    # --- item explorer and raw data (annotations/views/items.py, annotations/api/items.py) ---------------------
    # Systems are shown here, so clinicians (members of s1 or not) get 404 like outsiders.
    "study-items": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(kwargs=s1, query={"sort": "disagreement"}, expect=STUDY_PAGE),
    ],
    "study-raw-data": [
        Check(kwargs=lambda w: {"slug": w.study.slug, "file_format": "csv"}, expect=STUDY_PAGE),
        Check(kwargs=lambda w: {"slug": w.study.slug, "file_format": "parquet"}, expect=STUDY_PAGE),
    ],
    "api-study-items": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-study-raw-data": [
        Check(kwargs=lambda w: {"slug": w.study.slug, "file_format": "csv"}, expect=STUDY_API_READ),
        Check(kwargs=lambda w: {"slug": w.study.slug, "file_format": "parquet"}, expect=STUDY_API_READ),
    ],
    # --- training jobs (annotations/views/jobs.py, annotations/api/jobs.py) -----------------------------
    "job-list": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        # A base model that cannot load offline: the form comes back with the error (400).
        Check(
            method="post",
            kwargs=s1,
            data={"kind": "dpo", "base_model": "/nowhere/model"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "job-detail": [Check(kwargs=lambda w: _job_kwargs(w, "queued"), expect=STUDY_PAGE)],
    "job-models": [Check(kwargs=s1, expect=STUDY_PAGE)],
    "job-artifacts": [Check(kwargs=lambda w: _job_kwargs(w, "succeeded"), expect=STUDY_PAGE)],
    "job-cancel": [Check(method="post", kwargs=lambda w: _job_kwargs(w, "queued"), expect=STUDY_FORM_POST)],
    "job-register-system": [
        Check(
            method="post",
            kwargs=lambda w: _job_kwargs(w, "succeeded"),
            data={"name": "trained-by-matrix"},
            expect=STUDY_FORM_POST,
        )
    ],
    "api-job-list": [
        Check(kwargs=s1, expect=STUDY_API_READ),
        Check(
            method="post",
            kwargs=s1,
            data={"kind": "dpo", "base_model": "/nowhere/model"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "api-job-detail": [Check(kwargs=lambda w: _job_kwargs(w, "queued"), expect=STUDY_API_READ)],
    "api-job-metrics": [Check(kwargs=lambda w: _job_kwargs(w, "queued"), expect=STUDY_API_READ)],
    # The researcher cancels the queued job; the admin then finds it finished (400).
    "api-job-cancel": [
        Check(
            method="post",
            kwargs=lambda w: _job_kwargs(w, "queued"),
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=400
            ),
        )
    ],
    # The researcher registers the system; the admin's second registration of the same name is refused (400).
    "api-job-register-system": [
        Check(
            method="post",
            kwargs=lambda w: _job_kwargs(w, "succeeded"),
            data={"name": "trained-by-matrix-api"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=400
            ),
        )
    ],
    # --- AI judges (annotations/views/judges.py, annotations/api/judges.py) -----------------------------------
    # An empty name is refused with the form (400).
    "judge-list": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=s1,
            data={"kind": "llm_endpoint", "name": "", "base_url": "http://127.0.0.1:9/v1", "model_name": "m"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    # A template without {keys} is refused with the form (400).
    "judge-detail": [
        Check(kwargs=lambda w: _judge_kwargs(w), expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=lambda w: _judge_kwargs(w),
            data={"title": "t", "system_prompt": "s", "user_prompt": "{response_1} {response_2}"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "judge-run-start": [Check(method="post", kwargs=lambda w: _judge_kwargs(w), expect=STUDY_FORM_POST)],
    "judge-run-detail": [Check(kwargs=lambda w: _judge_run_kwargs(w), expect=STUDY_PAGE)],
    "judge-run-cancel": [Check(method="post", kwargs=lambda w: _judge_run_kwargs(w), expect=STUDY_FORM_POST)],
    # The researcher adds the judge; the admin's second judge of the same name is refused (400).
    "api-judge-create-llm": [
        Check(
            method="post",
            kwargs=s1,
            data={"name": "matrix-llm-api", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-x"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=400
            ),
        )
    ],
    "api-judge-create-reward": [
        Check(
            method="post",
            kwargs=s1,
            data={"name": "matrix-rm", "reward_jobs": {}},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        )
    ],
    "api-judge-detail": [Check(kwargs=lambda w: _judge_kwargs(w), expect=STUDY_API_READ)],
    # The researcher starts a run; the admin's second start while it is queued is refused (400).
    "api-judge-runs": [
        Check(kwargs=lambda w: _judge_kwargs(w), expect=STUDY_API_READ),
        Check(
            method="post",
            kwargs=lambda w: _judge_kwargs(w),
            data={"criteria": []},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=400
            ),
        ),
    ],
    "api-judge-run-detail": [Check(kwargs=lambda w: _judge_run_kwargs(w), expect=STUDY_API_READ)],
    # The researcher cancels the queued run; the admin then finds it finished (400).
    "api-judge-run-cancel": [
        Check(
            method="post",
            kwargs=lambda w: _judge_run_kwargs(w),
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=400
            ),
        )
    ],
    # --- clinician workspace (annotations/views/workspace.py, annotations/api/workspace.py) ------------------
    # Only a clinician member of the study reaches it, and only their own assignments: another clinician's pair,
    # and every pair for researchers and admins (who have no rater), is 404. s1 is a draft unless a check opens it.
    "workspace-home": [
        Check(
            # Not a clinician account: 403 (there is nothing of theirs to show, and no study is named).
            expect=expect(
                anonymous=302, other_clinician=200, clinician=200, other_researcher=403, researcher=403, admin=403
            )
        )
    ],
    "workspace-next": [
        Check(
            method="post",
            kwargs=lambda w: _open_s1(w) or s1(w),
            # The clinician is sent on to their pair (a redirect); nobody else may rate in s1.
            expect=expect(
                anonymous=302, other_clinician=404, clinician=302, other_researcher=404, researcher=404, admin=404
            ),
        )
    ],
    "workspace-done": [Check(kwargs=s1, expect=CLINICIAN_PAGE)],
    "workspace-pair": [
        Check(kwargs=lambda w: {"public_id": w.assignment.public_id}, expect=CLINICIAN_PAGE),
        # other_clinician's pair in s2: theirs alone.
        Check(
            kwargs=lambda w: {"public_id": w.other_assignment.public_id},
            expect=expect(
                anonymous=302, other_clinician=200, clinician=404, other_researcher=404, researcher=404, admin=404
            ),
        ),
    ],
    "workspace-submit": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w),
            data=lambda w: {f"v_{key}": 1 for key in _criterion_keys(w)},
            expect=CLINICIAN_FORM_POST,
        ),
        # The same page revises the submitted pair.
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w, submitted=True),
            data=lambda w: {"mode": "revise", **{f"v_{key}": -1 for key in _criterion_keys(w)}},
            expect=CLINICIAN_FORM_POST,
        ),
    ],
    "workspace-skip": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w),
            data={"skip_reason": "conflict-of-interest"},
            expect=CLINICIAN_FORM_POST,
        )
    ],
    # Taking back a pair the clinician has not skipped changes nothing and shows the pair.
    "workspace-take-back": [Check(method="post", kwargs=lambda w: _own_pair(w), expect=CLINICIAN_FORM_POST)],
    "workspace-draft": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w),
            data=lambda w: {"draft": _compact_json({"values": {key: 1 for key in _criterion_keys(w)}})},
            expect=CLINICIAN_PAGE,
        )
    ],
    "workspace-feedback": [Check(kwargs=lambda w: _calibration_pair(w), expect=CLINICIAN_PAGE)],
    "api-workspace-next": [
        # s1 is still a draft: nothing to hand out (204).
        Check(
            method="post",
            kwargs=s1,
            expect=expect(
                anonymous=401, other_clinician=404, clinician=204, other_researcher=404, researcher=404, admin=404
            ),
        ),
        # Open: the clinician gets their leased pair back.
        Check(method="post", kwargs=lambda w: _open_s1(w) or s1(w), expect=CLINICIAN_API),
    ],
    "api-workspace-pair": [
        Check(kwargs=lambda w: {"public_id": w.assignment.public_id}, expect=CLINICIAN_API),
        Check(
            kwargs=lambda w: {"public_id": w.other_assignment.public_id},
            expect=expect(
                anonymous=401, other_clinician=200, clinician=404, other_researcher=404, researcher=404, admin=404
            ),
        ),
    ],
    "api-workspace-submit": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w),
            data=lambda w: {"values": {key: 1 for key in _criterion_keys(w)}},
            expect=CLINICIAN_API,
        )
    ],
    "api-workspace-revise": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w, submitted=True),
            data=lambda w: {"values": {key: -1 for key in _criterion_keys(w)}},
            expect=CLINICIAN_API,
        )
    ],
    "api-workspace-skip": [
        Check(
            method="post",
            kwargs=lambda w: _own_pair(w),
            data={"reason": "Conflict of interest."},
            expect=CLINICIAN_API,
        )
    ],
    "api-workspace-draft": [
        Check(
            method="put",
            kwargs=lambda w: _own_pair(w),
            data=lambda w: {"draft": {"values": {key: 1 for key in _criterion_keys(w)}}, "total_seconds": 5},
            expect=CLINICIAN_API,
        )
    ],
    # --- rating progress for researchers (annotations/views/study_progress.py, annotations/api/workspace.py) ---
    "study-progress": [Check(kwargs=s1, expect=STUDY_PAGE)],
    "study-clinician-add": [
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {"username": w.other_clinician.username, "quota": 5},
            expect=STUDY_FORM_POST,
        )
    ],
    "study-leases-expire": [Check(method="post", kwargs=s1, expect=STUDY_FORM_POST)],
    "study-gold-mark": [
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {
                "comparison": w.comparison.pk,
                "expected": _compact_json({key: 1 for key in _criterion_keys(w)}),
            },
            expect=STUDY_FORM_POST,
        )
    ],
    "study-workspace-settings": [
        Check(
            method="post",
            kwargs=s1,
            data={"overlap_k": 2, "lease_minutes": 30, "calibration_size": 0, "gold_rate": 0, "rationale_mode": "none"},
            expect=STUDY_FORM_POST,
        )
    ],
    "api-study-progress": [Check(kwargs=s1, expect=STUDY_API_READ)],
    "api-study-gold": [
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {"comparison": w.comparison.pk, "expected": {key: 1 for key in _criterion_keys(w)}},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
            ),
        )
    ],
    "api-study-clinicians": [
        Check(
            method="post",
            kwargs=s1,
            data=lambda w: {"username": w.other_clinician.username, "quota": 5},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=201
            ),
        )
    ],
    # --- preference exports (annotations/views/exports.py, annotations/api/exports.py) -----------------------
    # A bad format is refused with the field named (400) before anything is written.
    "export-list": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=s1,
            data={"format": "csv"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "export-detail": [Check(kwargs=lambda w: _export_kwargs(w), expect=STUDY_PAGE)],
    "export-download": [Check(kwargs=lambda w: _export_kwargs(w), expect=STUDY_PAGE)],
    "api-export-list": [
        Check(kwargs=s1, expect=STUDY_API_READ),
        Check(
            method="post",
            kwargs=s1,
            data={"format": "csv"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "api-export-detail": [Check(kwargs=lambda w: _export_kwargs(w), expect=STUDY_API_READ)],
    "api-export-download": [Check(kwargs=lambda w: _export_kwargs(w), expect=STUDY_API_READ)],
    # --- generation and follow-up studies (annotations/views/generation.py, annotations/api/generation.py) ---
    # A bad endpoint URL is refused with the field named (400) before anything is queued.
    "generation-run-list": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=s1,
            data={"system_name": "matrix-gen", "base_url": "not-a-url", "model_name": "m"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "generation-run-detail": [Check(kwargs=lambda w: _generation_run_kwargs(w), expect=STUDY_PAGE)],
    # The researcher cancels the queued run; the admin is told it has finished (both redirect back).
    "generation-run-cancel": [Check(method="post", kwargs=lambda w: _generation_run_kwargs(w), expect=STUDY_FORM_POST)],
    # The matrix job's artifact holds no model: refused with a message, back to the job's page.
    "job-generate": [
        Check(
            method="post",
            kwargs=lambda w: _job_kwargs(w, "succeeded"),
            data={"system_name": "matrix-gen-job"},
            expect=STUDY_FORM_POST,
        )
    ],
    # A taken slug and a single system: the form comes back with the errors (400).
    "followup-create": [
        Check(kwargs=s1, expect=STUDY_PAGE),
        Check(
            method="post",
            kwargs=s1,
            data={"slug": "s2", "systems": "zz-system-alpha-7f3"},
            expect=expect(
                anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "api-generation-run-list": [
        Check(kwargs=s1, expect=STUDY_API_READ),
        Check(
            method="post",
            kwargs=s1,
            data={"system_name": "matrix-gen", "source": "endpoint", "base_url": "not-a-url", "model_name": "m"},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
            ),
        ),
    ],
    "api-generation-run-detail": [Check(kwargs=lambda w: _generation_run_kwargs(w), expect=STUDY_API_READ)],
    # The researcher cancels the queued run; the admin then finds it finished (400).
    "api-generation-run-cancel": [
        Check(
            method="post",
            kwargs=lambda w: _generation_run_kwargs(w),
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=400
            ),
        )
    ],
    # The researcher creates the follow-up; the admin's second one with the same slug is refused (400).
    "api-followup-create": [
        Check(
            method="post",
            kwargs=s1,
            data={"slug": "s1-matrix-followup", "systems": ["zz-system-alpha-7f3", "zz-system-beta-9c1"]},
            expect=expect(
                anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=400
            ),
        )
    ],
}


def _report_snapshot_kwargs(w) -> dict[str, Any]:
    from annotations.models import ReportSnapshot

    snapshot, _ = ReportSnapshot.objects.get_or_create(study=w.study, fingerprint="route-matrix")
    return {"slug": w.study.slug, "snapshot_id": snapshot.pk}


def _screening_hit(w):
    from annotations.models import ScreeningHit

    response = w.comparison.response_first
    hit, _ = ScreeningHit.objects.get_or_create(response=response, term="alpha", defaults={"snippet": "…alpha…"})
    return hit


def _invitation(w):
    from datetime import timedelta

    from annotations.services.accounts import invitation_create

    return invitation_create(
        email="someone@example.org", role="clinician", study=w.study, actor=w.admin, valid_for=timedelta(days=1)
    )


def _job_kwargs(w, status: str) -> dict[str, Any]:
    """A training job of s1 in `status` (created once per route), with an artifacts folder when succeeded."""
    import tempfile
    from pathlib import Path

    from annotations.models import TrainingJob

    job = TrainingJob.objects.filter(study=w.study, criterion_key=f"matrix-{status}").first()
    if job is None:
        folder = Path(tempfile.mkdtemp(prefix="matrix-job-"))
        (folder / "training_config.json").write_text("{}")
        job = TrainingJob.objects.create(
            study=w.study, kind="dpo", criterion_key=f"matrix-{status}", status=status, artifacts_path=str(folder)
        )
    return {"slug": w.study.slug, "public_id": job.public_id}


def _criterion_keys(w) -> list[str]:
    from annotations.services.studies import study_criteria

    return [criterion.key for criterion in study_criteria(w.study)]


def _compact_json(value) -> str:
    # Form bodies in the matrix are not URL-encoded, so keep JSON free of spaces.
    import json

    return json.dumps(value, separators=(",", ":"))


def _open_s1(w) -> None:
    from annotations.models import Study

    Study.objects.filter(pk=w.study.pk).update(status=Study.Status.OPEN)


def _own_pair(w, *, submitted: bool = False) -> dict[str, Any]:
    """The clinician's leased pair in s1, with s1 open so it can be rated; submitted first when asked."""
    from annotations.models import Assignment
    from annotations.services.rating import RatingInput, rating_submit

    _open_s1(w)
    if submitted:
        assignment = Assignment.objects.select_related("study").get(pk=w.assignment.pk)
        values = {key: 1 for key in _criterion_keys(w)}
        rating_submit(assignment=assignment, rater=w.clinician.rater, data=RatingInput(values=values))
    return {"public_id": w.assignment.public_id}


def _calibration_pair(w) -> dict[str, Any]:
    """A calibration pair of s1 the clinician has submitted: the one kind of pair with a feedback page."""
    from django.utils import timezone

    from annotations.models import Assignment, Comparison, Rating
    from annotations.services.studies import study_criteria
    from tests.security.conftest import _pair

    comparison = _pair(w.study, "s1-calibration")
    criteria = study_criteria(w.study)
    Comparison.objects.filter(pk=comparison.pk).update(
        is_gold=True, gold_expected={criterion.key: 1 for criterion in criteria}
    )
    assignment = Assignment.objects.create(
        study=w.study,
        comparison=comparison,
        rater=w.clinician.rater,
        purpose=Assignment.Purpose.CALIBRATION,
        status=Assignment.Status.SUBMITTED,
        left_is_first=True,
        submitted_at=timezone.now(),
    )
    Rating.objects.bulk_create([Rating(assignment=assignment, criterion=criterion, value=-1) for criterion in criteria])
    return {"public_id": assignment.public_id}


def _export_kwargs(w) -> dict[str, Any]:
    """A finished export of s1 (created once per route) with a zip beside its directory."""
    import tempfile
    from pathlib import Path

    from annotations.models import PreferenceExport

    export = PreferenceExport.objects.filter(study=w.study, format="trl-dpo", status="succeeded").first()
    if export is None:
        export = PreferenceExport(study=w.study, format="trl-dpo", status="succeeded", manifest={})
        directory = Path(tempfile.mkdtemp(prefix="matrix-export-")) / str(export.public_id)
        directory.mkdir()
        (directory / "README.md").write_text("# matrix export\n")
        directory.with_name(f"{directory.name}.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        export.path = str(directory)
        export.save()
    return {"slug": w.study.slug, "public_id": export.public_id}


def _judge_kwargs(w) -> dict[str, Any]:
    """An LLM judge of s1 (created once per route), pointing at a port where nothing listens."""
    from annotations.models import Judge
    from annotations.services.judging import llm_judge_create

    judge = Judge.objects.filter(study=w.study, name="matrix-judge").first()
    if judge is None:
        judge = llm_judge_create(
            study=w.study, name="matrix-judge", base_url="http://127.0.0.1:9/v1", model_name="m", actor=None
        )
    return {"slug": w.study.slug, "judge_id": judge.pk}


def _judge_run_kwargs(w) -> dict[str, Any]:
    """A queued run of that judge (created once per route, never dispatched)."""
    from annotations.models import Judge, JudgeRun
    from annotations.services.judging import judge_run_create

    _judge_kwargs(w)
    judge = Judge.objects.get(study=w.study, name="matrix-judge")
    run = JudgeRun.objects.filter(judge=judge).first() or judge_run_create(judge=judge, actor=None, dispatch=False)
    return {"slug": w.study.slug, "public_id": run.public_id}


def _generation_run_kwargs(w) -> dict[str, Any]:
    """A queued endpoint generation run of s1 (created once per route)."""
    from annotations.models import GenerationRun

    run = GenerationRun.objects.filter(study=w.study, system_name="matrix-gen").first()
    if run is None:
        run = GenerationRun.objects.create(
            study=w.study, source="endpoint", base_url="http://127.0.0.1:9/v1", model_name="m", system_name="matrix-gen"
        )
    return {"slug": w.study.slug, "public_id": run.public_id}


def _researcher_token(w):
    from annotations.services.accounts import api_token_issue

    return api_token_issue(user=w.researcher, name="matrix")[0]


def _reset_token(w) -> str:
    from annotations.services.accounts import password_reset_link_create

    return password_reset_link_create(user=w.clinician, actor=w.admin)[1]


# Patient preference surveys (annotations/views/surveys.py, annotations/api/surveys.py).
def _survey_kwargs(w) -> dict[str, Any]:
    """An open survey of s1 with one response (created once per route)."""
    from annotations.models.survey import Survey, SurveyResponse
    from annotations.services.surveys import survey_create, survey_criteria, survey_open

    survey = Survey.objects.filter(study=w.study, title="matrix-survey").first()
    if survey is None:
        survey = survey_create(study=w.study, actor=None, title="matrix-survey", consent_text="I agree.")
        survey = survey_open(survey=survey, actor=None)
        keys = [c.key for c in survey_criteria(w.study)]
        SurveyResponse.objects.create(
            survey=survey, submission_key="matrix", importance=dict.fromkeys(keys, 4), top_priority=keys[0]
        )
    return {"slug": w.study.slug, "public_id": survey.public_id}


def _survey_link(w) -> dict[str, Any]:
    from annotations.models.survey import Survey

    _survey_kwargs(w)
    return {"link_token": Survey.objects.get(study=w.study, title="matrix-survey").link_token}


def _survey_uuid(w) -> str:
    return str(_survey_kwargs(w)["public_id"])


EVERYONE_200 = expect(
    anonymous=200, other_clinician=200, clinician=200, other_researcher=200, researcher=200, admin=200
)
# The second persona to create a weight set of the same name is refused.
FIRST_CREATES = expect(
    anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=302, admin=400
)
ROUTES["survey-list"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    Check(method="post", kwargs=s1, data={"title": "t", "consent_text": "c"}, expect=STUDY_FORM_POST),
]
ROUTES["survey-detail"] = [Check(kwargs=_survey_kwargs, expect=STUDY_PAGE)]
ROUTES["survey-status"] = [Check(method="post", kwargs=_survey_kwargs, data={"action": "open"}, expect=STUDY_FORM_POST)]
ROUTES["survey-results"] = [
    Check(kwargs=_survey_kwargs, expect=STUDY_PAGE),
    Check(
        method="post",
        kwargs=_survey_kwargs,
        data={"name": "matrix-weights", "method": "mean_importance"},
        expect=FIRST_CREATES,
    ),
]
ROUTES["survey-responses-csv"] = [Check(kwargs=_survey_kwargs, expect=STUDY_PAGE)]
# The public page needs no account; a post without a valid form is refused with the form again (400).
ROUTES["survey-public"] = [
    Check(kwargs=_survey_link, expect=EVERYONE_200),
    Check(
        method="post",
        kwargs=_survey_link,
        data={"submission_key": "forged"},
        expect=expect(
            anonymous=400, other_clinician=400, clinician=400, other_researcher=400, researcher=400, admin=400
        ),
    ),
]
ROUTES["survey-thanks"] = [Check(kwargs=_survey_link, expect=EVERYONE_200)]
ROUTES["api-survey-list"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="post",
        kwargs=s1,
        data={"title": "api survey", "consent_text": "I agree."},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=201
        ),
    ),
]
ROUTES["api-survey-results"] = [Check(kwargs=_survey_kwargs, expect=STUDY_API_READ)]
ROUTES["api-survey-responses-csv"] = [Check(kwargs=_survey_kwargs, expect=STUDY_API_READ)]
ROUTES["api-weight-set-list"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="post",
        kwargs=s1,
        data=lambda w: {"survey": _survey_uuid(w), "name": "api-weights", "method": "top_priority"},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=400
        ),
    ),
]


# --- a study's People page, lifecycle and history (issue 12, items 1 and 4) ------------------------------------
def _s1_invitation(w) -> dict[str, Any]:
    return {"slug": w.study.slug, "invitation_id": _invitation(w).pk}


ROUTES["study-invite"] = [
    Check(method="post", kwargs=s1, data={"email": "new@example.org", "role": "clinician"}, expect=STUDY_FORM_POST)
]
ROUTES["study-invitation-resend"] = [Check(method="post", kwargs=_s1_invitation, expect=STUDY_FORM_POST)]
ROUTES["study-invitation-revoke"] = [Check(method="post", kwargs=_s1_invitation, expect=STUDY_FORM_POST)]
ROUTES["study-member-quota"] = [
    Check(
        method="post",
        kwargs=lambda w: {"slug": w.study.slug, "user_id": w.clinician.pk},
        data={"quota": "5"},
        expect=STUDY_FORM_POST,
    )
]
# The confirmation page comes first: the POST check below it removes the clinician.
ROUTES["study-member-remove"] = [
    Check(kwargs=lambda w: {"slug": w.study.slug, "user_id": w.clinician.pk}, expect=STUDY_PAGE),
    *ROUTES["study-member-remove"],
]
ROUTES["study-close"] = [Check(kwargs=s1, expect=STUDY_PAGE), *ROUTES["study-close"]]
ROUTES["study-history"] = [Check(kwargs=s1, expect=STUDY_PAGE)]
ROUTES["api-study-history"] = [Check(kwargs=s1, expect=STUDY_API_READ)]
ROUTES["api-study-invitations"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="post",
        kwargs=s1,
        data={"email": "api-invitee@example.org", "role": "clinician", "quota": 10},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=201
        ),
    ),
]
_STUDY_API_WRITE_200 = expect(
    anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
)
ROUTES["api-study-invitation-resend"] = [Check(method="post", kwargs=_s1_invitation, expect=_STUDY_API_WRITE_200)]
ROUTES["api-study-invitation-revoke"] = [Check(method="post", kwargs=_s1_invitation, expect=_STUDY_API_WRITE_200)]
# Setting the quota comes before the removal check of the same route.
ROUTES["api-study-member"] = [
    Check(
        method="patch",
        kwargs=lambda w: {"slug": w.study.slug, "username": w.clinician.username},
        data={"quota": 12},
        expect=_STUDY_API_WRITE_200,
    ),
    *ROUTES["api-study-member"],
]


# --- weight sweeps (annotations/views/sweeps.py, annotations/api/sweeps.py) ------------------------------------
def _sweep_kwargs(w) -> dict[str, Any]:
    """A MODPO sweep of s1 with one queued job (created once per route)."""
    from annotations.models import Sweep, TrainingJob

    sweep = Sweep.objects.filter(study=w.study, name="matrix-sweep").first()
    if sweep is None:
        sweep = Sweep.objects.create(study=w.study, kind="modpo", name="matrix-sweep")
        job = TrainingJob.objects.create(
            study=w.study, kind="modpo", criterion_key="empathy", weights={"empathy": 1.0}, sweep=sweep
        )
        sweep.weight_vectors = [
            {"label": "Empathy 1", "weights": {"empathy": 1.0}, "job": str(job.public_id), "role": "dpo-baseline"}
        ]
        sweep.save(update_fields=["weight_vectors"])
    return {"slug": w.study.slug, "public_id": sweep.public_id}


# A launch without any weight vector comes back with the form (400) or the API's error (400).
ROUTES["sweep-list"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    Check(
        method="post",
        kwargs=s1,
        data={"kind": "modpo", "name": "matrix"},
        expect=expect(
            anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
        ),
    ),
]
ROUTES["sweep-detail"] = [Check(kwargs=_sweep_kwargs, expect=STUDY_PAGE)]
ROUTES["sweep-cancel"] = [Check(method="post", kwargs=_sweep_kwargs, expect=STUDY_FORM_POST)]
ROUTES["api-sweep-list"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="post",
        kwargs=s1,
        data={"kind": "modpo", "export": "00000000-0000-0000-0000-000000000000", "base_model": "tiny"},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
        ),
    ),
]
ROUTES["api-sweep-detail"] = [Check(kwargs=_sweep_kwargs, expect=STUDY_API_READ)]
# The researcher cancels the sweep's queued job; the admin then finds nothing left to cancel (400).
ROUTES["api-sweep-cancel"] = [
    Check(
        method="post",
        kwargs=_sweep_kwargs,
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=400
        ),
    )
]


# --- rubric editing and gold answers (helper 6) -----------------------------------------------------------
def _gold_kwargs(w) -> dict[str, Any]:
    return {"slug": w.study.slug, "comparison_id": w.comparison.pk}


def _gold_answers(w) -> dict[str, Any]:
    from annotations.services.studies import study_criteria

    return {**{f"v_{c.key}": "-1" for c in study_criteria(w.study)}, "kind": "gold", "explanation": "matrix"}


def _gold_api_body(w) -> dict[str, Any]:
    from annotations.services.studies import study_criteria

    return {"expected": {c.key: -1 for c in study_criteria(w.study)}, "kind": "calibration", "explanation": "why"}


ROUTES["study-rubric"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    # "Add a criterion" shows the form with a blank row and saves nothing.
    Check(
        method="post",
        kwargs=s1,
        data={"rows": "0", "action": "add"},
        expect=expect(
            anonymous=302, other_clinician=404, clinician=404, other_researcher=404, researcher=200, admin=200
        ),
    ),
]
ROUTES["study-rubric-versions"] = [Check(kwargs=s1, expect=STUDY_PAGE)]
ROUTES["study-rubric-version"] = [Check(kwargs=lambda w: {"slug": w.study.slug, "number": 1}, expect=STUDY_PAGE)]
ROUTES["comparison-gold"] = [
    Check(kwargs=_gold_kwargs, expect=STUDY_PAGE),
    Check(method="post", kwargs=_gold_kwargs, data=_gold_answers, expect=STUDY_FORM_POST),
]
ROUTES["comparison-gold-unmark"] = [Check(method="post", kwargs=_gold_kwargs, expect=STUDY_FORM_POST)]
ROUTES["api-study-rubric"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="put",
        kwargs=s1,
        data={"criteria": []},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=400, admin=400
        ),
    ),
]
ROUTES["api-study-rubric-versions"] = [Check(kwargs=s1, expect=STUDY_API_READ)]
ROUTES["api-study-rubric-version"] = [
    Check(kwargs=lambda w: {"slug": w.study.slug, "number": 1}, expect=STUDY_API_READ)
]
ROUTES["api-comparison-gold"] = [
    Check(kwargs=_gold_kwargs, expect=STUDY_API_READ),
    Check(method="put", kwargs=_gold_kwargs, data=_gold_api_body, expect=STUDY_API_READ),
    Check(method="delete", kwargs=_gold_kwargs, expect=STUDY_API_READ),
]


# --- disputes and adjudication, safety queue (issue 12, items 8 and 9) -------------------------------------
def _disputed_item(w) -> dict[str, Any]:
    """Two external raters split on s1's first criterion of the World's comparison: a disputed item."""
    from django.utils import timezone

    from annotations.models import Assignment, Rater, Rating
    from annotations.services.studies import study_criteria

    criterion = study_criteria(w.study)[0]
    for label, value in (("matrix-split-a", -1), ("matrix-split-b", 1)):
        rater, _ = Rater.objects.get_or_create(kind=Rater.Kind.EXTERNAL, label=label)
        assignment, created = Assignment.objects.get_or_create(
            comparison=w.comparison,
            rater=rater,
            defaults={
                "study": w.study,
                "status": Assignment.Status.SUBMITTED,
                "purpose": Assignment.Purpose.IMPORTED,
                "submitted_at": timezone.now(),
            },
        )
        if created:
            Rating.objects.create(assignment=assignment, criterion=criterion, value=value)
    return {"slug": w.study.slug, "comparison_id": w.comparison.pk, "criterion": criterion.key}


def _flagged_pair(w) -> dict[str, Any]:
    """An external rater marked both responses of the World's comparison unacceptable: a flagged pair."""
    from django.utils import timezone

    from annotations.models import Assignment, Rater

    rater, _ = Rater.objects.get_or_create(kind=Rater.Kind.EXTERNAL, label="matrix-flagger")
    Assignment.objects.get_or_create(
        comparison=w.comparison,
        rater=rater,
        defaults={
            "study": w.study,
            "status": Assignment.Status.SUBMITTED,
            "purpose": Assignment.Purpose.IMPORTED,
            "submitted_at": timezone.now(),
            "both_unacceptable": True,
            "unacceptable_reason": "Both miss the crisis.",
        },
    )
    return {"slug": w.study.slug, "comparison_id": w.comparison.pk}


def _decision(w) -> dict[str, Any]:
    item = _disputed_item(w)
    return {
        "comparison": item["comparison_id"],
        "criterion": item["criterion"],
        "decision": "tie",
        "reason": "Both fine",
    }


ROUTES["study-disputes"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    Check(kwargs=lambda w: {"slug": _disputed_item(w)["slug"]}, expect=STUDY_PAGE),
]
ROUTES["study-dispute"] = [Check(kwargs=_disputed_item, expect=STUDY_PAGE)]
ROUTES["study-dispute-decide"] = [
    Check(method="post", kwargs=_disputed_item, data={"decision": "tie", "reason": "Both fine"}, expect=STUDY_FORM_POST)
]
ROUTES["study-dispute-withdraw"] = [Check(method="post", kwargs=_disputed_item, expect=STUDY_FORM_POST)]
ROUTES["study-safety"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    Check(kwargs=lambda w: {"slug": _flagged_pair(w)["slug"]}, expect=STUDY_PAGE),
]
ROUTES["study-safety-pair"] = [Check(kwargs=_flagged_pair, expect=STUDY_PAGE)]
ROUTES["study-safety-review"] = [Check(method="post", kwargs=_flagged_pair, expect=STUDY_FORM_POST)]
ROUTES["study-safety-note"] = [
    Check(method="post", kwargs=_flagged_pair, data={"note": "Seen"}, expect=STUDY_FORM_POST)
]
ROUTES["study-response-exports"] = [
    Check(
        method="post",
        kwargs=lambda w: {**_flagged_pair(w), "response_id": w.comparison.response_first_id},
        data={"excluded": "1"},
        expect=STUDY_FORM_POST,
    )
]
ROUTES["api-dispute-list"] = [Check(kwargs=lambda w: {"slug": _disputed_item(w)["slug"]}, expect=STUDY_API_READ)]
ROUTES["api-adjudication-list"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(
        method="post",
        kwargs=s1,
        data=_decision,
        # The researcher decides (201); the admin, sending the same decision, changes nothing (200).
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=201, admin=200
        ),
    ),
]
ROUTES["api-adjudication-detail"] = [
    Check(kwargs=_disputed_item, expect=STUDY_API_READ),
    Check(
        method="delete",
        kwargs=lambda w: (_decide_for_matrix(w), _disputed_item(w))[1],
        # The researcher withdraws the decision (204); nothing is left for the admin (404).
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=204, admin=404
        ),
    ),
]
ROUTES["api-safety-queue"] = [Check(kwargs=lambda w: {"slug": _flagged_pair(w)["slug"]}, expect=STUDY_API_READ)]
ROUTES["api-safety-pair"] = [Check(kwargs=_flagged_pair, expect=STUDY_API_READ)]
ROUTES["api-safety-review"] = [
    Check(method="post", kwargs=_flagged_pair, data={"status": "reviewed", "note": "Seen"}, expect=STUDY_API_READ)
]
ROUTES["api-response-exports"] = [
    Check(
        method="post",
        kwargs=lambda w: {"slug": w.study.slug, "response_id": w.comparison.response_first_id},
        data={"excluded": True},
        expect=STUDY_API_READ,
    )
]


def _decide_for_matrix(w) -> dict[str, Any]:
    from annotations.models import Adjudication
    from annotations.services.studies import study_criteria

    item = _disputed_item(w)
    Adjudication.objects.get_or_create(
        study=w.study,
        comparison=w.comparison,
        criterion=study_criteria(w.study)[0],
        defaults={"value": 0, "reason": "matrix", "decided_by": w.researcher},
    )
    return item


# --- marked passages and guidelines (annotations/views/spans.py, views/guidelines.py, api/spans.py, api/guidelines.py)
def _own_span(w) -> dict[str, Any]:
    """A span on the clinician's leased pair in s1 (s1 open), marked on the pair's first response."""
    from annotations.models import Span

    kwargs = _own_pair(w)
    response = w.assignment.comparison.response_first
    span = Span.objects.create(
        assignment=w.assignment, response=response, start=0, end=1, label="unsafe", quote=response.content[:1]
    )
    return {**kwargs, "span_id": span.pk}


SPAN_BODY = {"side": 1, "start": 0, "end": 1, "label": "unsafe"}
ROUTES["workspace-span-create"] = [
    Check(method="post", kwargs=lambda w: _own_pair(w), data=SPAN_BODY, expect=CLINICIAN_FORM_POST)
]
ROUTES["workspace-span-delete"] = [Check(method="post", kwargs=_own_span, expect=CLINICIAN_FORM_POST)]
ROUTES["api-workspace-spans"] = [
    Check(kwargs=lambda w: _own_pair(w), expect=CLINICIAN_API),
    Check(
        method="post",
        kwargs=lambda w: _own_pair(w),
        data=SPAN_BODY,
        expect=expect(
            anonymous=401, other_clinician=404, clinician=201, other_researcher=404, researcher=404, admin=404
        ),
    ),
]
ROUTES["api-workspace-span-detail"] = [
    Check(
        method="delete",
        kwargs=_own_span,
        expect=expect(
            anonymous=401, other_clinician=404, clinician=204, other_researcher=404, researcher=404, admin=404
        ),
    )
]
ROUTES["workspace-guidelines"] = [Check(kwargs=s1, expect=CLINICIAN_PAGE)]
ROUTES["api-workspace-guidelines"] = [Check(kwargs=s1, expect=CLINICIAN_API)]
ROUTES["study-guidelines"] = [
    Check(kwargs=s1, expect=STUDY_PAGE),
    # Preview renders the page again (200); save redirects back to it.
    Check(method="post", kwargs=s1, data={"guidelines": "Be kind.", "action": "preview"}, expect=STUDY_PAGE),
    Check(
        method="post",
        kwargs=s1,
        data={"guidelines": "Be kind.", "span_labels": "unsafe", "action": "save"},
        expect=STUDY_FORM_POST,
    ),
]
ROUTES["api-study-guidelines"] = [
    Check(kwargs=s1, expect=STUDY_API_READ),
    Check(method="put", kwargs=s1, data={"guidelines": "Be kind.", "span_labels": ["unsafe"]}, expect=STUDY_API_READ),
]
# The report as a PDF (issue 12): like the CSV and JSON downloads, never computed here (302 until computed).
ROUTES["study-report-download"].append(
    Check(
        kwargs=lambda w: {"slug": w.study.slug, "file_format": "pdf"},
        query={"resamples": "0"},
        expect=STUDY_FORM_POST,
    )
)
ROUTES["api-study-report-pdf"] = [
    Check(
        kwargs=s1,
        query={"resamples": "0"},
        expect=expect(
            anonymous=401, other_clinician=404, clinician=404, other_researcher=404, researcher=202, admin=202
        ),
    )
]
