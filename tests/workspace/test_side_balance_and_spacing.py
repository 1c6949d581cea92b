"""Side balance read from the SideBalance counter (constant whatever the rater's history), the counter kept
with every claim, prompt spacing (Study.space_prompts), and the merged submit-and-next of the pair page."""

from datetime import timedelta
from itertools import pairwise

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotations.models import (
    Assignment,
    AuditEvent,
    Comparison,
    Prompt,
    Response,
    SideBalance,
    StudyMembership,
    System,
)
from annotations.services.assignment import (
    SPACE_PROMPTS_LAST,
    assignment_next,
    assignment_skip,
    leases_expire,
    leases_sweep_if_due,
    rater_for_user,
)
from annotations.services.audit import audit_chain_verify
from annotations.services.rating import RatingInput, rating_submit
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = pytest.mark.django_db
KEYS = ["empathy", "safety", "overall"]


def lead_from_history(study, rater) -> dict[int, int]:
    """What the counter must hold: per system, shown on the left minus on the right (the old history scan)."""
    lead: dict[int, int] = {}
    rows = Assignment.objects.filter(study=study, rater=rater, left_is_first__isnull=False).values_list(
        "left_is_first", "comparison__response_first__system_id", "comparison__response_second__system_id"
    )
    for left_is_first, first, second in rows:
        left, right = (first, second) if left_is_first else (second, first)
        lead[left] = lead.get(left, 0) + 1
        lead[right] = lead.get(right, 0) - 1
    return {system: n for system, n in lead.items()}


def counters(study, rater) -> dict[int, int]:
    return dict(SideBalance.objects.filter(study=study, rater=rater).values_list("system_id", "lead"))


def add_history(study, rater, n: int) -> None:
    """`n` submitted pairs for the rater, bulk-created (as if rated over months), with the counters the 0008
    backfill would have made. The history's comparisons are excluded, so the pool stays the study's own."""
    systems = list(System.objects.filter(study=study).order_by("id"))[:2]
    prompts = Prompt.objects.bulk_create(
        [
            Prompt(study=study, external_id=f"hist-{rater.pk}-{i}", messages=[{"role": "user", "content": "x"}])
            for i in range(n)
        ]
    )
    responses = Response.objects.bulk_create(
        [
            Response(study=study, prompt=p, system=systems[j], external_id=f"hist-{rater.pk}-{i}-{j}", content="r")
            for i, p in enumerate(prompts)
            for j in (0, 1)
        ]
    )
    comparisons = Comparison.objects.bulk_create(
        [
            Comparison(
                study=study,
                prompt=p,
                response_first=responses[2 * i],
                response_second=responses[2 * i + 1],
                excluded=True,
            )
            for i, p in enumerate(prompts)
        ]
    )
    now = timezone.now()
    Assignment.objects.bulk_create(
        [
            Assignment(
                study=study,
                comparison=c,
                rater=rater,
                status=Assignment.Status.SUBMITTED,
                left_is_first=i % 3 != 0,  # leaning: the first system on the left two times in three
                order_seed=i,
                leased_until=now,
                submitted_at=now,
            )
            for i, c in enumerate(comparisons)
        ]
    )
    for system_id, lead in lead_from_history(study, rater).items():
        SideBalance.objects.update_or_create(study=study, rater=rater, system_id=system_id, defaults={"lead": lead})


def test_claiming_reads_the_counter_in_as_many_queries_at_10000_pairs_as_at_10(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=6, overlap_k=2)
    short, long = (rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["short", "long"]))
    add_history(study, short, 10)
    add_history(study, long, 10_000)
    leases_sweep_if_due(study=study)  # the periodic sweep is not what is measured here
    counts, imbalances = [], []
    for rater in (short, long):
        with CaptureQueriesContext(connection) as queries:
            assignment = assignment_next(study=study, rater=rater, with_content=False)
        assert assignment is not None
        counts.append(len(queries))
        claim = AuditEvent.objects.filter(action="assignment.claim", object_id=str(assignment.pk)).get()
        first = assignment.comparison.response_first.system_id
        second = assignment.comparison.response_second.system_id
        history = lead_from_history(study, rater)
        # The imbalance recorded for the draw is the one the full history gives, before this pair was counted.
        shown_left, shown_right = (first, second) if assignment.left_is_first else (second, first)
        history[shown_left] -= 1
        history[shown_right] += 1
        assert claim.data["imbalance"] == history.get(first, 0) - history.get(second, 0)
        imbalances.append(claim.data["imbalance"])
    assert counts[0] == counts[1], counts
    assert abs(imbalances[1]) >= 3000  # the long history leans hard one way: the counter saw all of it
    assert len([q for q in queries.captured_queries if "annotations_assignment" in q["sql"]]) <= 3


def test_the_counter_follows_every_claim_and_is_kept_by_expiry_and_skips(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=5, overlap_k=2)
    rater, other = (rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["c1", "c2"]))
    for _ in range(6):
        rating_submit(
            assignment=assignment_next(study=study, rater=rater),
            rater=rater,
            data=RatingInput(values=dict.fromkeys(KEYS, 1)),
        )
    skipped = assignment_next(study=study, rater=rater)
    assignment_skip(assignment=skipped, rater=rater, reason="I know this person")
    stale = assignment_next(study=study, rater=rater)
    assert leases_expire(study=study, now=stale.leased_until + timedelta(minutes=1), exclude_rater=other) == 1
    assignment_next(study=study, rater=other)
    # Shown sides stay shown (skipped and expired pairs included), exactly as the history says.
    for who in (rater, other):
        assert counters(study, who) == lead_from_history(study, who)
        assert sum(counters(study, who).values()) == 0
    assert audit_chain_verify().intact


def test_pairs_of_one_prompt_are_spaced_apart_unless_nothing_else_is_left(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=4, overlap_k=2)
    assert study.space_prompts  # on by default
    [rater] = (rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["c1"]))
    prompts = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        recent = prompts[-SPACE_PROMPTS_LAST:]
        seen = Assignment.objects.filter(rater=rater).values("comparison_id")
        others_left = (
            Comparison.objects.filter(study=study, excluded=False, is_gold=False)
            .exclude(pk__in=seen)
            .exclude(prompt_id__in=recent)
            .exists()
        )
        prompt = assignment.comparison.prompt_id
        if others_left or prompt not in recent:
            assert prompt not in recent, (prompts, prompt)
        prompts.append(prompt)
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 0)))
    assert len(prompts) == 12  # spacing never withholds a pair: the rater still gets every comparison
    assert all(a != b for a, b in list(pairwise(prompts))[:8])


def test_without_spacing_the_breadth_first_order_repeats_a_prompt(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=4, overlap_k=2, space_prompts=False)
    [rater] = (rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["c1"]))
    prompts = []
    for _ in range(3):
        assignment = assignment_next(study=study, rater=rater)
        prompts.append(assignment.comparison.prompt_id)
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 0)))
    assert len(set(prompts)) == 1  # what the setting is for: the same message three times in a row


def test_spacing_is_a_workspace_setting_on_the_study_page(client, researcher, django_user_model):
    study = build_study(owner=researcher, prompts=2)
    client.force_login(researcher)
    page = client.get(reverse("study-progress", args=[study.slug])).content.decode()
    assert 'name="space_prompts"' in page and "last 3 pairs" in page
    url = reverse("study-workspace-settings", args=[study.slug])
    client.post(url, {"overlap_k": "2", "lease_minutes": "30", "rationale_mode": study.rationale_mode})
    study.refresh_from_db()
    assert study.space_prompts is False
    client.post(
        url, {"overlap_k": "2", "lease_minutes": "30", "rationale_mode": study.rationale_mode, "space_prompts": "1"}
    )
    study.refresh_from_db()
    assert study.space_prompts is True
    assert AuditEvent.objects.filter(action="study.workspace_settings").count() == 2


def test_the_page_submit_stores_the_pair_and_claims_the_next_in_one_transaction(client, researcher, django_user_model):
    study = build_study(owner=researcher, prompts=3, overlap_k=2)
    [user] = add_clinicians(django_user_model, study, ["c1"])
    rater = rater_for_user(user=user)
    client.force_login(user)
    first = client.post(reverse("workspace-next", args=[study.slug]))["Location"]
    client.get(first)
    public_id = first.rstrip("/").rsplit("/", 1)[-1]
    form = {f"v_{k}": "-1" for k in KEYS} | {"mode": "submit", "v_not_a_criterion": "1"}
    with CaptureQueriesContext(connection) as queries:
        response = client.post(reverse("workspace-submit", args=[public_id]), form)
    assert response.status_code == 302 and "/workspace/pair/" in response["Location"]
    assert response["Location"] != first
    sql = [q["sql"] for q in queries.captured_queries]
    # One transaction (a savepoint inside the test's own transaction) for the submit and the next claim.
    assert sum(q.startswith(("BEGIN", "SAVEPOINT")) for q in sql) == 1, sql
    done = Assignment.objects.get(public_id=public_id)
    assert done.status == Assignment.Status.SUBMITTED and done.ratings.count() == len(KEYS)
    latest = list(AuditEvent.objects.order_by("-sequence")[:2])
    assert [e.action for e in latest] == ["assignment.claim", "rating.submit"]
    assert latest[0].sequence == latest[1].sequence + 1 and latest[0].prev_hash == latest[1].row_hash
    assert audit_chain_verify().intact
    # A repeated submit (double click) changes nothing and goes on to the same next pair.
    again = client.post(reverse("workspace-submit", args=[public_id]), form)
    assert again["Location"] == response["Location"]
    assert Assignment.objects.filter(rater=rater, status=Assignment.Status.LEASED).count() == 1
    # Another clinician's pair is a 404, never a 403.
    [other] = add_clinicians(django_user_model, study, ["c2"])
    client.logout()
    client.force_login(other)
    assert client.post(reverse("workspace-submit", args=[public_id]), form).status_code == 404
    # A clinician removed from the study cannot submit their leased pair either.
    client.logout()
    client.force_login(user)
    leased = Assignment.objects.get(rater=rater, status=Assignment.Status.LEASED)
    StudyMembership.objects.filter(study=study, user=user).delete()
    assert client.post(reverse("workspace-submit", args=[leased.public_id]), form).status_code == 404
