"""Gold and calibration without JSON: a researcher answers a comparison as a clinician would, explains the
answers, and the calibration phase gives calibration items first with the explanation as feedback."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import Assignment, AuditEvent, Comparison
from annotations.services.assignment import assignment_next
from annotations.services.gold import GoldKind, comparison_gold_set, gold_answer_clean
from tests.workspace.conftest import SYSTEM_NAMES, add_clinicians, build_study

pytestmark = pytest.mark.django_db

KEYS = ("empathy", "safety", "overall")


def _answers(**values) -> dict[str, str]:
    return {f"v_{key}": str(values.get(key, -1)) for key in KEYS}


def _mark(study, comparison, *, kind=GoldKind.GOLD, explanation="The first names the feeling.", **values):
    answer = gold_answer_clean(
        study=study, values={k: values.get(k, -1) for k in KEYS}, explanation=explanation, kind=kind
    )
    return comparison_gold_set(comparison=comparison, answer=answer, actor=None)


def test_answering_on_the_page_marks_the_comparison_gold(client, researcher):
    study = build_study(owner=researcher, slug="g1", open_study=False)
    comparison = study.comparisons.first()
    client.force_login(researcher)
    page = client.get(f"/studies/{study.slug}/items/{comparison.pk}/gold/")
    html = page.content.decode()
    assert page.status_code == 200 and "Not gold" in html
    assert comparison.response_first.system.name in html  # the researcher's view names the systems
    assert 'name="v_empathy"' in html and "First (" in html  # the pair page's controls, sides named
    response = client.post(
        f"/studies/{study.slug}/items/{comparison.pk}/gold/",
        {**_answers(empathy=-1, safety=0, overall=1), "kind": "gold", "explanation": "Warmer but less safe."},
    )
    assert response.status_code == 302
    comparison.refresh_from_db()
    assert comparison.is_gold and not comparison.is_calibration
    assert comparison.gold_expected == {"empathy": -1, "safety": 0, "overall": 1}  # canonical: first shown left
    assert comparison.gold_explanation == "Warmer but less safe."
    event = AuditEvent.objects.filter(action="comparison.gold").latest("sequence")
    assert event.data["after"]["expected"] == {"empathy": -1, "safety": 0, "overall": 1}
    assert "Gold answers" in client.get(f"/studies/{study.slug}/items/").content.decode()


def test_a_missing_answer_and_a_calibration_item_without_explanation_are_refused_by_name(client, researcher):
    study = build_study(owner=researcher, slug="g2", open_study=False)
    comparison = study.comparisons.first()
    client.force_login(researcher)
    answers = _answers()
    del answers["v_safety"]
    response = client.post(
        f"/studies/{study.slug}/items/{comparison.pk}/gold/", {**answers, "kind": "calibration", "explanation": ""}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "Choose the expected answer for “Safety”." in html
    assert "clinicians read this as feedback" in html
    comparison.refresh_from_db()
    assert not comparison.is_gold


def test_a_comparison_already_with_clinicians_is_refused(researcher):
    study = build_study(owner=researcher, slug="g3", open_study=False)
    comparison = study.comparisons.first()
    Comparison.objects.filter(pk=comparison.pk).update(active_assignments=1)
    with pytest.raises(Exception, match="already with 1 clinician"):
        _mark(study, comparison)


def test_unmarking_makes_it_a_regular_pair(client, researcher):
    study = build_study(owner=researcher, slug="g4", open_study=False)
    comparison = study.comparisons.first()
    _mark(study, comparison, kind=GoldKind.CALIBRATION)
    client.force_login(researcher)
    response = client.post(f"/studies/{study.slug}/items/{comparison.pk}/gold/unmark")
    assert response.status_code == 302
    comparison.refresh_from_db()
    assert (comparison.is_gold, comparison.is_calibration, comparison.gold_expected) == (False, False, {})


def test_calibration_gives_calibration_items_first_and_shows_the_explanation(client, researcher, django_user_model):
    study = build_study(owner=researcher, slug="g5", open_study=False, calibration_size=1)
    gold_only, calibration = list(study.comparisons.order_by("id")[:2])
    _mark(study, gold_only, kind=GoldKind.GOLD)
    _mark(study, calibration, kind=GoldKind.CALIBRATION, explanation="The warmer reply names the worry.")
    from annotations.services.studies import study_open

    study = study_open(study=study, actor=researcher)
    (carol,) = add_clinicians(django_user_model, study, ["gc1"])
    first = assignment_next(study=study, rater=carol.rater)
    assert first.comparison_id == calibration.pk and first.purpose == Assignment.Purpose.CALIBRATION

    client.force_login(carol)
    submitted = client.post(f"/workspace/pair/{first.public_id}/submit", {**_answers(), "mode": "submit"})
    assert submitted.status_code == 302 and submitted.url.endswith("/feedback")
    feedback = client.get(submitted.url).content.decode()
    assert "Why these answers are expected" in feedback and "The warmer reply names the worry." in feedback
    assert not any(name in feedback for name in SYSTEM_NAMES)  # still blinded


def test_hidden_gold_checks_take_plain_gold_items_before_calibration_items(researcher, django_user_model):
    study = build_study(owner=researcher, slug="g6", open_study=False, gold_rate=1.0)
    calibration, gold_only = list(study.comparisons.order_by("id")[:2])
    _mark(study, calibration, kind=GoldKind.CALIBRATION)
    _mark(study, gold_only, kind=GoldKind.GOLD)
    from annotations.services.studies import study_open

    study = study_open(study=study, actor=researcher)
    (dave,) = add_clinicians(django_user_model, study, ["gc2"])
    first = assignment_next(study=study, rater=dave.rater)  # gold rate 1: random() < 1 always wants gold
    assert first.purpose == Assignment.Purpose.GOLD and first.comparison_id == gold_only.pk


def test_the_api_sets_reads_and_unmarks(client, researcher):
    study = build_study(owner=researcher, slug="g7", open_study=False)
    comparison = study.comparisons.first()
    client.force_login(researcher)
    url = f"/api/v1/studies/{study.slug}/comparisons/{comparison.pk}/gold"
    body = {"expected": {"empathy": 1, "safety": 1, "overall": 1}, "kind": "calibration", "explanation": "Why."}
    marked = client.put(url, body, content_type="application/json").json()
    assert marked["is_calibration"] and marked["expected"] == body["expected"] and marked["explanation"] == "Why."
    bad = client.put(url, {**body, "expected": {"empathy": 9}}, content_type="application/json")
    details = json.dumps(bad.json()["error"]["details"])
    assert bad.status_code == 400 and "Safety" in details and "from -1 to 1" in details
    assert client.get(url).json()["is_gold"]
    assert client.delete(url).json()["is_gold"] is False


def test_the_command_marks_and_unmarks(researcher, capsys):
    study = build_study(owner=researcher, slug="g8", open_study=False)
    comparison = study.comparisons.first()
    args = ["gold_mark", "--study", study.slug, "--comparison", str(comparison.pk)]
    call_command(
        *args, "--expected", json.dumps(dict.fromkeys(KEYS, 0)), "--kind", "calibration", "--explanation", "Even."
    )
    comparison.refresh_from_db()
    assert comparison.is_calibration and comparison.gold_expected == dict.fromkeys(KEYS, 0)
    with pytest.raises(CommandError, match="empathy"):
        call_command(*args, "--expected", json.dumps({"empathy": 5, "safety": 0, "overall": 0}))
    call_command(*args, "--unmark")
    comparison.refresh_from_db()
    assert not comparison.is_gold
