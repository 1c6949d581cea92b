"""Hot queries compiled once per process (annotations/compiled.py), and the page loop's statement count."""

import re
import uuid
from datetime import datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations import compiled
from annotations.models import Assignment, Rating, StudyMembership
from annotations.services.assignment import assignment_next, day_start, rater_for_user, rater_progress_extra
from tests.workspace.conftest import add_clinicians

pytestmark = pytest.mark.django_db
KEYS = ("empathy", "safety", "overall")


def _pair_query(*, public_id: uuid.UUID, user_id: int, today: datetime):
    progress, params = rater_progress_extra(user_id=user_id, today=today)
    return (
        Assignment.objects.select_related("study", "rater__user", "comparison__prompt")
        .extra(select=progress, select_params=params)  # noqa: S610 (constant SQL)
        .filter(public_id=public_id, rater__user_id=user_id)[:1]
    )


def test_a_compiled_query_returns_what_the_queryset_returns_for_each_new_set_of_values(
    ws_study, django_user_model, researcher
):
    users = add_clinicians(django_user_model, ws_study, ["c-one", "c-two"], owner=researcher)
    claims = [assignment_next(study=ws_study, rater=rater_for_user(user=user)) for user in users]
    parameters = {"public_id": uuid.UUID, "user_id": int, "today": datetime}
    key = ("test-pair", uuid.uuid4())  # a key of its own: compiled afresh in this test
    for user, claim in zip(users, claims, strict=True):
        values = {"public_id": claim.public_id, "user_id": user.pk, "today": day_start()}
        expected = _pair_query(**values).get()
        got = compiled.first(key, _pair_query, parameters, **values)
        assert got.pk == expected.pk == claim.pk
        # Related objects and extra columns come along exactly as the ORM builds them.
        assert got.rater.user.username == user.username and got.comparison.prompt.pk == expected.comparison.prompt.pk
        assert (got.member_role, got.progress_done, got.study_clinicians) == (
            expected.member_role,
            expected.progress_done,
            expected.study_clinicians,
        )
        assert got.member_role == StudyMembership.Role.CLINICIAN
    # Someone else's pair: nothing, as the queryset gives.
    other = {"public_id": claims[0].public_id, "user_id": users[1].pk, "today": day_start()}
    assert compiled.first(key, _pair_query, parameters, **other) is None


def test_a_parameter_the_sql_does_not_use_is_refused_at_compile_time():
    def ignores_rater(*, study_id: int, rater_id: int):
        return Assignment.objects.filter(study_id=study_id)[:1]

    with pytest.raises(RuntimeError, match="no parameter for rater_id"):
        compiled.compiled(("test-ignores", uuid.uuid4()), ignores_rater, {"study_id": int, "rater_id": int})


def test_a_value_of_the_wrong_type_is_refused_not_sent():
    def by_public_id(*, public_id: uuid.UUID):
        return Assignment.objects.filter(public_id=public_id)[:1]

    query = compiled.compiled(("test-type", uuid.uuid4()), by_public_id, {"public_id": uuid.UUID})
    with pytest.raises(TypeError, match="public_id must be a UUID"):
        query.models({"public_id": "not-a-uuid"})


def _page_loop_statements(client, slug: str) -> list[tuple[int, int]]:
    """(statements of the pair page, of its submit with the claim of the next pair), three times."""
    location = client.post(reverse("workspace-next", args=[slug]))["Location"]
    counts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as page_queries:
            page = client.get(location)
        keys = re.findall(r'name="v_([a-z_]+)" value="0"', page.content.decode())
        form = {**{f"v_{key}": "1" for key in keys}, "mode": "submit"}
        with CaptureQueriesContext(connection) as submit_queries:
            response = client.post(location.rstrip("/") + "/submit", form)
        assert response.status_code == 302 and "/workspace/pair/" in response["Location"]
        location = response["Location"]
        counts.append((len(page_queries), len(submit_queries)))
    return counts


def test_the_page_loop_costs_three_statements_per_page_and_eleven_per_submit(client, ws_study, clinician):
    """The clinician's path: the pair page reads the session, the user and the pair with everything it shows
    (progress, rubric fingerprint, spans counted); the submit, in one transaction, locks the rater and the pair,
    stores the answers (one statement), claims a comparison, inserts the next pair with its side counts (one
    statement) and appends the audit rows (the chain's head, then the rows): BEGIN and COMMIT make eleven
    (bench/rating_loop.py measures the same path under load)."""
    client.force_login(clinician)
    counts = _page_loop_statements(client, ws_study.slug)
    assert counts[1:] == [(3, 11), (3, 11)], counts
    assert Rating.objects.filter(assignment__rater__user=clinician).count() == 3 * 3


def test_the_claim_reads_the_raters_history_once_whatever_the_statistics(researcher, django_user_model):
    """The claim's "not yet seen by this rater" is a hashed NOT IN over the rater's comparison ids. As an anti-join
    its plan hung on the statistics: analysed while the rater had no history (a new study), PostgreSQL rescanned
    the whole history for every candidate, a claim quadratic in the history (bench/rating_loop.py --clients 1)."""
    import functools

    from annotations.services import assignment as engine
    from annotations.services.rating import RatingInput, rating_submit
    from tests.workspace.conftest import build_study

    study = build_study(owner=researcher, slug="plan", prompts=20, overlap_k=3)
    (user,) = add_clinicians(django_user_model, study, ["lone"], owner=researcher)
    rater = rater_for_user(user=user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_assignment")  # statistics of an empty history
    for _ in range(25):  # the lone rater's pairs stay in the pool (k = 3): the claim must step past them
        assignment = assignment_next(study=study, rater=rater, with_content=False)
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 1)))
    pick = compiled.compiled(
        ("test-claim-plan", uuid.uuid4()),
        functools.partial(engine._pool_pick, one_prompt_per_rater=False, spaced=True, index=0),
        {"study_id": int, "rater_id": int, "overlap_k": int},
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + pick.sql, pick.bind({"study_id": study.pk, "rater_id": rater.pk, "overlap_k": 3}))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "hashed SubPlan" in plan and "Anti Join" not in plan, plan
    # The prompt spacing reads the rater's last pairs from their own index, not by scanning the study.
    assert "assignment_rater_recent" in plan, plan


def test_model_writes_store_exactly_what_the_orm_stores(ws_study, clinician):
    """The rating loop's INSERT and UPDATE built once per process (compiled.writes) against the ORM's own: the
    same columns, JSON, timestamps and defaults, read back through the ORM."""
    from datetime import UTC, timedelta

    rater = rater_for_user(user=clinician)
    comparisons = list(ws_study.comparisons.order_by("pk")[:2])
    leased_until = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    def assignment(comparison):
        return Assignment(
            study=ws_study,
            comparison=comparison,
            rater=rater,
            left_is_first=False,
            order_seed=2**62 + 5,
            leased_until=leased_until,
            draft={"values": {"empathy": -1}, "note": "naïve ✓"},
        )

    by_orm, by_writes = assignment(comparisons[0]), assignment(comparisons[1])
    by_orm.save(force_insert=True)
    rows = compiled.writes(Assignment)
    rows.insert([by_writes])
    assert by_writes.pk and not by_writes._state.adding and by_writes.created_at is not None

    # An UPDATE of some fields, as the submit writes them.
    fields = ("status", "submitted_at", "draft", "total_seconds")
    for obj in (by_orm, by_writes):
        obj.status, obj.submitted_at = Assignment.Status.SUBMITTED, leased_until + timedelta(minutes=3)
        obj.draft, obj.total_seconds = {}, 12.5
    by_orm.save(update_fields=list(fields))
    with connection.cursor() as cursor:
        cursor.execute(rows.update_sql(fields), rows.update_params(by_writes, fields))

    def stored(obj):
        row = Assignment.objects.filter(pk=obj.pk).values().get()
        return {k: v for k, v in row.items() if k not in ("id", "public_id", "comparison_id", "created_at")}

    assert stored(by_writes) == stored(by_orm)
    assert stored(by_writes)["status"] == "submitted" and stored(by_writes)["order_seed"] == 2**62 + 5
    # A raw write keeps a timestamp as set (the audit chain hashes it); a plain one stamps auto_now_add afresh.
    kept = assignment(comparisons[1])
    kept.created_at = leased_until
    assert rows.insert_params([kept], raw=True)[rows.insert_fields.index(Assignment._meta.get_field("created_at"))] == [
        leased_until
    ]
    rows.insert_params([kept])
    assert kept.created_at > leased_until


def test_the_submit_reads_the_raters_leases_not_their_history_and_the_page_does_not_count_the_study(
    researcher, django_user_model
):
    """The submit looks for another live lease among the rater's leases only (a partial index), not through
    everything they ever rated in the study; the page does not count the study's comparisons."""
    from annotations.services.rating import RatingInput, _pair_locked_query, rating_submit
    from annotations.views.workspace import _pair_page_query
    from tests.workspace.conftest import build_study

    study = build_study(owner=researcher, slug="history", prompts=20, overlap_k=3)
    (user,) = add_clinicians(django_user_model, study, ["busy"], owner=researcher)
    rater = rater_for_user(user=user)
    for _ in range(25):
        assignment = assignment_next(study=study, rater=rater, with_content=False)
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 1)))
    current = assignment_next(study=study, rater=rater, with_content=False)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotations_assignment")

    def plan(key, build, parameters, values):
        query = compiled.compiled((key, uuid.uuid4()), build, parameters)
        with transaction.atomic(), connection.cursor() as cursor:
            # A test's tables are tiny, so reading them whole is cheapest; without that, the planner's pick among
            # the indexes shows which serves each part.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + query.sql, query.bind(values))
            return "\n".join(row[0] for row in cursor.fetchall())

    submit = plan(
        "test-submit-plan",
        _pair_locked_query,
        {"public_id": uuid.UUID, "rater_id": int, "user_id": int},
        {"public_id": current.public_id, "rater_id": rater.pk, "user_id": user.pk},
    )
    assert "assignment_rater_leased" in submit, submit
    page = plan(
        "test-page-plan",
        _pair_page_query,
        {"public_id": uuid.UUID, "user_id": int, "today": datetime},
        {"public_id": current.public_id, "user_id": user.pk, "today": day_start()},
    )
    # The study's size is not counted on every page: it comes from a per-process count.
    assert "annotations_comparison c" not in page, page


def test_the_study_size_behind_pair_n_of_n_follows_an_exclusion_within_seconds(ws_study, clinician, monkeypatch):
    from annotations.models import Comparison
    from annotations.services import assignment as engine

    before = engine.study_regular_comparisons(ws_study)
    assert before == Comparison.objects.filter(study=ws_study, excluded=False, is_gold=False).count() > 1
    Comparison.objects.filter(pk=ws_study.comparisons.order_by("pk").first().pk).update(excluded=True)
    assert engine.study_regular_comparisons(ws_study) == before  # read again only after STUDY_SIZE_SECONDS
    clock = engine.time.monotonic()
    monkeypatch.setattr(engine.time, "monotonic", lambda: clock + engine.STUDY_SIZE_SECONDS + 1)
    assert engine.study_regular_comparisons(ws_study) == before - 1
