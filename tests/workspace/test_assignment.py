"""The assignment engine: k raters per comparison, breadth-first, leases, quotas, order, calibration, gold."""

from collections import Counter
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotations.models import Assignment, AuditEvent, Comparison, Rater
from annotations.services.assignment import (
    RaterProgress,
    assignment_next,
    assignment_skip,
    assignment_take_back,
    order_draw,
    overlap_shortfalls,
    rater_for_user,
    rater_progress,
)
from annotations.services.rating import RatingInput, comparison_mark_gold, gold_accuracy, rating_submit
from annotations.services.studies import study_close
from tests.workspace.conftest import add_clinicians, build_study

pytestmark = pytest.mark.django_db


def submit_all(study, rater, value=-1, assignment=None):
    assignment = assignment or assignment_next(study=study, rater=rater)
    keys = ["empathy", "safety", "overall"]
    return rating_submit(assignment=assignment, rater=rater, data=RatingInput(values=dict.fromkeys(keys, value)))


def raters_for(django_user_model, study, names):
    return [rater_for_user(user=u) for u in add_clinicians(django_user_model, study, names)]


def test_it_fills_started_comparisons_before_opening_new_ones(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=3, overlap_k=2)
    r1, r2, r3 = raters_for(django_user_model, study, ["c1", "c2", "c3"])
    a1 = assignment_next(study=study, rater=r1)
    a2 = assignment_next(study=study, rater=r2)
    a3 = assignment_next(study=study, rater=r3)
    assert a1.comparison_id == a2.comparison_id  # the started one reaches k first
    assert a3.comparison_id != a1.comparison_id  # then a new one opens
    a1.comparison.refresh_from_db()
    assert a1.comparison.active_assignments == 2


def test_a_rater_never_gets_the_same_comparison_twice_and_runs_out(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=2, overlap_k=3)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    seen = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        seen.append(assignment.comparison_id)
        submit_all(study, rater, assignment=assignment)
    assert len(seen) == len(set(seen)) == Comparison.objects.filter(study=study).count() == 6


def test_one_prompt_per_rater_is_respected(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=3, overlap_k=3, one_prompt_per_rater=True)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    prompts = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        prompts.append(assignment.comparison.prompt_id)
        submit_all(study, rater, assignment=assignment)
    assert len(prompts) == len(set(prompts)) == 3


def test_a_reload_resumes_the_current_lease_instead_of_claiming_another(ws_study, clinician):
    rater = rater_for_user(user=clinician)
    first = assignment_next(study=ws_study, rater=rater)
    again = assignment_next(study=ws_study, rater=rater)
    assert first.pk == again.pk
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_expired_leases_return_to_the_pool(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1, lease_minutes=30)
    r1, r2 = raters_for(django_user_model, study, ["c1", "c2"])
    held = [assignment_next(study=study, rater=r1)]
    submit_all(study, r1, assignment=held[0])
    held.append(assignment_next(study=study, rater=r1))
    held.append(assignment_next(study=study, rater=r2))
    assert held[2] is not None
    assert assignment_next(study=study, rater=r2).pk == held[2].pk  # pool exhausted for r2 except its own
    submit_all(study, r2, assignment=held[2])
    assert assignment_next(study=study, rater=r2) is None  # k=1 and r1 holds the last one
    later = timezone.now() + timedelta(minutes=31)
    reclaimed = assignment_next(study=study, rater=r2, now=later)
    assert reclaimed is not None and reclaimed.comparison_id == held[1].comparison_id
    held[1].refresh_from_db()
    assert held[1].status == Assignment.Status.EXPIRED
    assert AuditEvent.objects.filter(action="assignment.expire").count() == 1
    assert Comparison.objects.get(pk=reclaimed.comparison_id).active_assignments == 1


def test_an_expired_lease_is_reinstated_on_submit_when_there_is_room(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=2)
    r1, r2 = raters_for(django_user_model, study, ["c1", "c2"])
    mine = assignment_next(study=study, rater=r1)
    assignment_next(study=study, rater=r2, now=timezone.now() + timedelta(hours=1))  # sweeps r1's lease
    mine.refresh_from_db()
    assert mine.status == Assignment.Status.EXPIRED
    outcome = submit_all(study, r1, assignment=mine)
    assert outcome.assignment.status == Assignment.Status.SUBMITTED
    comparison = Comparison.objects.get(pk=mine.comparison_id)
    live = comparison.assignments.filter(status__in=["leased", "submitted"]).count()
    assert comparison.active_assignments == live <= 2


def test_a_lost_lease_cannot_be_submitted_when_the_comparison_is_full(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1)
    r1, r2 = raters_for(django_user_model, study, ["c1", "c2"])
    mine = assignment_next(study=study, rater=r1)
    theirs = assignment_next(study=study, rater=r2, now=timezone.now() + timedelta(hours=1))
    assert theirs.comparison_id == mine.comparison_id
    with pytest.raises(ValidationError) as exc:
        submit_all(study, r1, assignment=mine)
    assert exc.value.code == "lease_lost"


def test_quota_stops_the_flow(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=3, overlap_k=1, quota_per_rater=2)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    for _ in range(2):
        submit_all(study, rater)
    assert assignment_next(study=study, rater=rater) is None


def test_skip_frees_the_place_and_the_rater_never_sees_it_again(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1)
    r1, r2 = raters_for(django_user_model, study, ["c1", "c2"])
    skipped = assignment_next(study=study, rater=r1)
    with pytest.raises(ValidationError):
        assignment_skip(assignment=skipped, rater=r1, reason="  ")
    assignment_skip(assignment=skipped, rater=r1, reason="I know this person")
    assert Comparison.objects.get(pk=skipped.comparison_id).active_assignments == 0
    nxt = assignment_next(study=study, rater=r1)
    assert nxt is None or nxt.comparison_id != skipped.comparison_id
    assert assignment_next(study=study, rater=r2).comparison_id == skipped.comparison_id


def test_a_skipped_pair_can_be_taken_back_while_its_place_is_free(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    skipped = assignment_next(study=study, rater=rater)
    assignment_skip(assignment=skipped, rater=rater, reason="Unsure")
    back = assignment_take_back(assignment=skipped, rater=rater)
    assert back.status == Assignment.Status.LEASED and back.leased_until > timezone.now()
    assert Comparison.objects.get(pk=skipped.comparison_id).active_assignments == 1
    assert assignment_next(study=study, rater=rater).pk == skipped.pk  # it is the current pair again
    assert AuditEvent.objects.filter(action="assignment.take_back", object_id=str(skipped.pk)).count() == 1
    # A repeated click changes nothing.
    assignment_take_back(assignment=skipped, rater=rater)
    assert Comparison.objects.get(pk=skipped.comparison_id).active_assignments == 1


def test_a_skipped_pair_cannot_be_taken_back_once_another_clinician_has_its_place(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1)
    r1, r2 = raters_for(django_user_model, study, ["c1", "c2"])
    skipped = assignment_next(study=study, rater=r1)
    assignment_skip(assignment=skipped, rater=r1, reason="Unsure")
    assert assignment_next(study=study, rater=r2).comparison_id == skipped.comparison_id
    with pytest.raises(ValidationError) as exc:
        assignment_take_back(assignment=skipped, rater=r1)
    assert exc.value.code == "place_taken"
    assert Assignment.objects.get(pk=skipped.pk).status == Assignment.Status.SKIPPED
    assert Comparison.objects.get(pk=skipped.comparison_id).active_assignments == 1


def test_a_skipped_pair_cannot_be_taken_back_after_the_study_closes(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=1, overlap_k=1)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    skipped = assignment_next(study=study, rater=rater)
    assignment_skip(assignment=skipped, rater=rater, reason="Unsure")
    study_close(study=study, actor=researcher)
    with pytest.raises(ValidationError) as exc:
        assignment_take_back(assignment=skipped, rater=rater)
    assert exc.value.code == "study_closed"


def test_progress_counts_the_pairs_done_of_the_share_and_the_time_rated_today(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=2, overlap_k=1)  # 6 comparisons, one clinician: a share of 6
    (rater,) = raters_for(django_user_model, study, ["c1"])
    assert rater_progress(study=study, rater=rater) == RaterProgress(done=0, target=6, seconds_today=0.0)
    for seconds in (30, 90):
        assignment = assignment_next(study=study, rater=rater)
        rating_submit(
            assignment=assignment,
            rater=rater,
            data=RatingInput(
                values=dict.fromkeys(["empathy", "safety", "overall"], 1), total_seconds=seconds, active_seconds=seconds
            ),
        )
    progress = rater_progress(study=study, rater=rater)
    assert (progress.done, progress.target, progress.remaining, progress.seconds_today) == (2, 6, 4, 120.0)
    tomorrow = timezone.now() + timedelta(days=1)
    assert rater_progress(study=study, rater=rater, now=tomorrow).seconds_today == 0.0


def test_a_closed_study_hands_out_nothing(researcher, django_user_model):
    study = build_study(owner=researcher, open_study=False)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    assert assignment_next(study=study, rater=rater) is None


def test_the_order_is_reproducible_from_the_stored_seed(ws_study, clinician):
    rater = rater_for_user(user=clinician)
    assignment = assignment_next(study=ws_study, rater=rater)
    event = AuditEvent.objects.get(action="assignment.claim", object_id=str(assignment.pk))
    assert event.data["seed"] == assignment.order_seed
    assert order_draw(seed=assignment.order_seed, imbalance=event.data["imbalance"]) == assignment.left_is_first


def test_order_draw_leans_towards_balance():
    assert not any(order_draw(seed=seed, imbalance=3) for seed in range(200))  # the bound forces balance
    draws = [order_draw(seed=seed, imbalance=1) for seed in range(3000)]
    share_first_left = sum(draws) / len(draws)
    assert 0.28 < share_first_left < 0.39  # Efron's coin: 1/3 when the first system already leads
    assert 0.46 < sum(order_draw(seed=s, imbalance=0) for s in range(3000)) / 3000 < 0.54


def test_each_rater_sees_each_system_on_the_left_about_half_the_time(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=14, overlap_k=1)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    left, shown = Counter(), Counter()
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        comparison = assignment.comparison
        first, second = comparison.response_first.system.name, comparison.response_second.system.name
        left[first if assignment.left_is_first else second] += 1
        shown.update([first, second])
        submit_all(study, rater, assignment=assignment)
    assert sum(shown.values()) == 2 * 42
    for system, n in shown.items():
        assert abs(left[system] - n / 2) <= 2, (system, left[system], n)  # balanced, not merely random


def test_calibration_comes_first_then_gold_is_mixed_in_unmarked(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=6, overlap_k=1, calibration_size=2, gold_rate=1.0)
    golds = list(Comparison.objects.filter(study=study).order_by("id")[:5])
    for comparison in golds:
        comparison_mark_gold(comparison=comparison, expected={"overall": -1, "safety": -1}, actor=researcher)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    purposes = []
    while (assignment := assignment_next(study=study, rater=rater)) is not None:
        purposes.append(assignment.purpose)
        towards_first = -1 if assignment.left_is_first else 1  # the side showing response_first
        outcome = submit_all(study, rater, value=towards_first, assignment=assignment)
        if assignment.purpose == Assignment.Purpose.CALIBRATION:
            assert outcome.feedback and {f.key for f in outcome.feedback} == {"overall", "safety"}
            assert all(f.agrees for f in outcome.feedback)
        else:
            assert outcome.feedback is None
    # Calibration first; then (rate 1.0) every remaining gold item, each once; then the regular pool.
    assert purposes[:5] == ["calibration", "calibration", "gold", "gold", "gold"]
    assert purposes.count("rating") == Comparison.objects.filter(study=study, is_gold=False).count()
    accuracy = gold_accuracy(study=study)["c1"]
    assert accuracy.items == 3 and accuracy.accuracy == 1.0


def test_gold_accuracy_counts_disagreement(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=2, overlap_k=1, gold_rate=1.0)
    gold = Comparison.objects.filter(study=study).order_by("id").first()
    comparison_mark_gold(comparison=gold, expected={"overall": 1}, actor=researcher)
    (rater,) = raters_for(django_user_model, study, ["c1"])
    assignment = assignment_next(study=study, rater=rater)
    assert assignment.purpose == Assignment.Purpose.GOLD
    # Answer "Response 1 better" on screen; canonically that favours whichever response was on the left.
    submit_all(study, rater, value=-1, assignment=assignment)
    expected_agrees = not assignment.left_is_first  # canonical +1 expected; -1 shown is canonical +1 iff swapped
    assert gold_accuracy(study=study)["c1"].accuracy == (1.0 if expected_agrees else 0.0)


def test_overlap_requirement_steers_raters_together_and_reports_shortfalls(researcher, django_user_model):
    study = build_study(owner=researcher, prompts=6, overlap_k=2, min_shared_per_rater_pair=2)
    raters = raters_for(django_user_model, study, ["c1", "c2", "c3"])
    assert {(s.rater_a, s.rater_b) for s in overlap_shortfalls(study=study)} == {
        ("c1", "c2"),
        ("c1", "c3"),
        ("c2", "c3"),
    }
    for _ in range(4):
        for rater in raters:
            if (a := assignment_next(study=study, rater=rater)) is not None:
                submit_all(study, rater, assignment=a)
    assert overlap_shortfalls(study=study) == []


def test_clinician_raters_are_created_on_first_use(clinician):
    Rater.objects.filter(user=clinician).delete()
    rater = rater_for_user(user=clinician)
    assert rater.kind == Rater.Kind.CLINICIAN and rater.user == clinician
