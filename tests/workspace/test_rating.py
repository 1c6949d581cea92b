"""Ratings: canonical storage, idempotent submission, revision with audit, rationale and safety rules, drafts."""

import pytest
from django.core.exceptions import ValidationError

from annotations.models import Assignment, AuditEvent, Rating
from annotations.services.assignment import assignment_next, rater_for_user
from annotations.services.rating import RatingInput, draft_save, rating_revise, rating_submit, scale_options
from annotations.services.studies import study_close
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = pytest.mark.django_db

KEYS = ("empathy", "safety", "overall")


@pytest.fixture
def claimed(ws_study, clinician):
    rater = rater_for_user(user=clinician)
    return assignment_next(study=ws_study, rater=rater), rater


def stored(assignment):
    return dict(Rating.objects.filter(assignment=assignment).values_list("criterion__key", "value"))


def test_ratings_are_stored_in_canonical_orientation(claimed):
    assignment, rater = claimed
    rating_submit(
        assignment=assignment, rater=rater, data=RatingInput(values={"empathy": -1, "safety": 0, "overall": 1})
    )
    flip = 1 if assignment.left_is_first else -1
    assert stored(assignment) == {"empathy": -1 * flip, "safety": 0, "overall": 1 * flip}
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.SUBMITTED and assignment.submitted_at is not None


def test_both_orientations_convert_to_the_same_canonical_answer(researcher, django_user_model):
    """Two raters who both prefer the comparison's first response store the same value whatever side they saw."""
    study = build_study(owner=researcher, prompts=1, overlap_k=3)
    raters = [rater_for_user(user=u) for u in add_clinicians(django_user_model, study, ["c1", "c2", "c3"])]
    target = None
    for rater in raters:
        assignment = assignment_next(study=study, rater=rater)
        target = target or assignment.comparison_id
        assert assignment.comparison_id == target
        first_on_left = assignment.left_is_first
        shown = -1 if first_on_left else 1  # point at whichever side shows response_first
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, shown)))
    assert set(Rating.objects.filter(assignment__comparison_id=target).values_list("value", flat=True)) == {-1}


def test_a_repeated_submit_changes_nothing_and_a_different_one_is_refused(claimed):
    assignment, rater = claimed
    data = RatingInput(values=dict.fromkeys(KEYS, 1))
    assert rating_submit(assignment=assignment, rater=rater, data=data).created
    assert not rating_submit(assignment=assignment, rater=rater, data=data).created
    assert Rating.objects.filter(assignment=assignment).count() == 3
    assert AuditEvent.objects.filter(action="rating.submit").count() == 1
    with pytest.raises(ValidationError) as exc:
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 0)))
    assert exc.value.code == "already_submitted"


def test_every_criterion_is_required_and_values_stay_on_the_scale(claimed):
    assignment, rater = claimed
    with pytest.raises(ValidationError) as exc:
        rating_submit(assignment=assignment, rater=rater, data=RatingInput(values={"empathy": 2, "safety": 0}))
    assert set(exc.value.message_dict) == {"empathy", "overall"}
    assert not Rating.objects.exists()


def test_a_revision_updates_the_ratings_and_keeps_each_change_in_the_audit_log(claimed):
    assignment, rater = claimed
    rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 1)))
    rating_revise(
        assignment=assignment, rater=rater, data=RatingInput(values={"empathy": 1, "safety": 1, "overall": -1})
    )
    rating_revise(
        assignment=assignment, rater=rater, data=RatingInput(values={"empathy": 1, "safety": 0, "overall": -1})
    )
    flip = 1 if assignment.left_is_first else -1
    assert stored(assignment) == {"empathy": flip, "safety": 0, "overall": -flip}
    revisions = AuditEvent.objects.filter(action="rating.revise").order_by("id")
    assert [set(e.data["after"]) for e in revisions] == [{"overall"}, {"safety"}]
    assert revisions[0].data["before"]["overall"]["value"] == flip
    assert Rating.objects.get(assignment=assignment, criterion__key="overall").revision == 2


def test_no_revision_after_the_study_closes(claimed, researcher):
    assignment, rater = claimed
    rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 1)))
    study_close(study=assignment.study, actor=researcher)
    with pytest.raises(ValidationError) as exc:
        rating_revise(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(KEYS, 0)))
    assert exc.value.code == "study_closed"


def test_required_rationales_have_a_minimum_length(researcher, django_user_model):
    study = build_study(
        owner=researcher, prompts=1, rationale_mode="per_criterion", rationale_required=True, rationale_min_length=10
    )
    rater = rater_for_user(user=add_clinicians(django_user_model, study, ["c1"])[0])
    assignment = assignment_next(study=study, rater=rater)
    short = RatingInput(values=dict.fromkeys(KEYS, 0), rationales=dict.fromkeys(KEYS, "too short"))
    with pytest.raises(ValidationError) as exc:
        rating_submit(assignment=assignment, rater=rater, data=short)
    assert set(exc.value.message_dict) == {f"rationale_{k}" for k in KEYS}
    good = RatingInput(values=dict.fromkeys(KEYS, 0), rationales={k: f"because of {k} reasons" for k in KEYS})
    rating_submit(assignment=assignment, rater=rater, data=good)
    assert Rating.objects.get(assignment=assignment, criterion__key="safety").rationale == "because of safety reasons"


def test_both_unacceptable_needs_a_reason(claimed):
    assignment, rater = claimed
    flagged = RatingInput(values=dict.fromkeys(KEYS, 0), both_unacceptable=True)
    with pytest.raises(ValidationError):
        rating_submit(assignment=assignment, rater=rater, data=flagged)
    flagged.unacceptable_reason = "Both dismiss a disclosure of self-harm."
    rating_submit(assignment=assignment, rater=rater, data=flagged)
    assignment.refresh_from_db()
    assert assignment.both_unacceptable and "self-harm" in assignment.unacceptable_reason


def test_drafts_and_time_on_task_are_kept_and_only_grow(claimed):
    assignment, rater = claimed
    assert draft_save(
        assignment=assignment, rater=rater, draft={"values": {"empathy": 1}}, total_seconds=40, active_seconds=30
    )
    assert draft_save(
        assignment=assignment, rater=rater, draft={"values": {"empathy": 0}}, total_seconds=10, active_seconds=5
    )
    assignment.refresh_from_db()
    assert assignment.draft == {"values": {"empathy": 0}}
    assert (assignment.total_seconds, assignment.active_seconds) == (40, 30)
    with pytest.raises(ValidationError):
        draft_save(assignment=assignment, rater=rater, draft={"values": {"empathy": "lots"}})
    rating_submit(
        assignment=assignment,
        rater=rater,
        data=RatingInput(values=dict.fromkeys(KEYS, 0), total_seconds=55, active_seconds=31),
    )
    assignment.refresh_from_db()
    assert assignment.draft == {} and (assignment.total_seconds, assignment.active_seconds) == (55, 31)


def test_another_clinician_cannot_touch_my_pair(claimed, other_clinician):
    assignment, _ = claimed
    intruder = rater_for_user(user=other_clinician)
    with pytest.raises(Assignment.DoesNotExist):
        rating_submit(assignment=assignment, rater=intruder, data=RatingInput(values=dict.fromkeys(KEYS, 0)))
    assert not draft_save(assignment=assignment, rater=intruder, draft={"values": {}})


@pytest.mark.parametrize("points", [3, 5, 7])
def test_scales_run_from_response_1_to_response_2(points):
    options = scale_options(points)
    assert [o["value"] for o in options] == list(range(-(points // 2), points // 2 + 1))
    assert options[0]["label"].startswith("Response 1") and options[-1]["label"].startswith("Response 2")
    assert options[points // 2]["label"] == "About the same"
    assert [o["key"] for o in options] == [str(i) for i in range(1, points + 1)]
    assert len({o["label"] for o in options}) == points
