import io
import json

import pytest
from django.core.exceptions import ValidationError

from annotations.models import Comparison, ScreeningHit, Study
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open

pytestmark = pytest.mark.django_db

SYSTEMS = ["alpha", "beta", "gamma"]


@pytest.fixture
def loaded():
    study = study_create(slug="cmp", title="Comparisons")
    lines = []
    for p in range(10):
        lines.append({"kind": "prompt", "id": f"p{p}", "messages": [{"role": "user", "content": f"Message {p}"}]})
        for s in SYSTEMS:
            lines.append(
                {
                    "kind": "response",
                    "id": f"p{p}-{s}",
                    "prompt": f"p{p}",
                    "system": s,
                    "content": f"Reply {p}, take {len(s)}.",
                }
            )
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    import_study_file(study=study, stream=io.BytesIO(data), filename="x.jsonl")
    return study


def system_pairs(study: Study) -> set[tuple[str, str]]:
    return {
        tuple(sorted((c.response_first.system.name, c.response_second.system.name)))
        for c in Comparison.objects.filter(study=study).select_related(
            "response_first__system", "response_second__system"
        )
    }


def test_all_pairs_compares_every_pair_of_systems_for_each_prompt_in_canonical_order(loaded):
    assert comparisons_build(study=loaded) == 30
    assert system_pairs(loaded) == {("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")}
    assert all(c.response_first_id < c.response_second_id for c in Comparison.objects.all())
    assert all(
        c.prompt_id == c.response_first.prompt_id == c.response_second.prompt_id for c in Comparison.objects.all()
    )
    assert comparisons_build(study=loaded) == 0  # building again is safe


def test_reference_compares_each_system_against_the_reference_only(loaded):
    assert comparisons_build(study=loaded, strategy="reference", reference_system="alpha") == 20
    assert system_pairs(loaded) == {("alpha", "beta"), ("alpha", "gamma")}


def test_reference_must_name_a_system_of_the_study(loaded):
    with pytest.raises(ValidationError):
        comparisons_build(study=loaded, strategy="reference", reference_system="nobody")


def test_a_budget_samples_reproducibly_with_a_seed(loaded):
    comparisons_build(study=loaded, budget=12, seed=7)
    first = set(Comparison.objects.values_list("response_first_id", "response_second_id"))
    assert len(first) == 12
    Comparison.objects.all().delete()
    comparisons_build(study=loaded, budget=12, seed=7)
    assert set(Comparison.objects.values_list("response_first_id", "response_second_id")) == first
    Comparison.objects.all().delete()
    comparisons_build(study=loaded, budget=12, seed=8)
    assert set(Comparison.objects.values_list("response_first_id", "response_second_id")) != first


def test_screening_catches_a_planted_system_name_and_a_vendor_phrase(loaded):
    from annotations.models import Response

    Response.objects.filter(external_id="p3-beta").update(content="Hi, beta here. I hear you.")
    Response.objects.filter(external_id="p4-gamma").update(
        content="As an AI language model developed by a lab, I can't."
    )
    Response.objects.filter(external_id="p5-alpha").update(content="The alphabet of feelings is long.")  # not a hit
    result = responses_screen(study=loaded)
    hits = {(h.response.external_id, h.term) for h in ScreeningHit.objects.select_related("response")}
    assert ("p3-beta", "beta") in hits
    assert ("p4-gamma", "as an ai language model") in hits
    assert not any(r == "p5-alpha" for r, _ in hits)
    assert result.open_hits == len(hits) == 3


def test_a_study_cannot_open_with_unresolved_hits_unless_overridden(loaded, researcher):
    from annotations.models import Response

    comparisons_build(study=loaded)
    Response.objects.filter(external_id="p3-beta").update(content="This is beta speaking.")
    responses_screen(study=loaded)
    with pytest.raises(ValidationError, match="screening hit"):
        study_open(study=loaded, actor=researcher)
    hit = ScreeningHit.objects.get()
    screening_hit_resolve(hit=hit, resolution="excluded", actor=researcher)
    assert Comparison.objects.filter(study=loaded, excluded=True).count() == 2
    assert study_open(study=loaded, actor=researcher).status == Study.Status.OPEN


def test_override_opens_despite_hits_and_is_recorded(loaded, researcher):
    from annotations.models import AuditEvent, Response

    comparisons_build(study=loaded)
    Response.objects.filter(external_id="p3-beta").update(content="This is beta speaking.")
    responses_screen(study=loaded)
    assert study_open(study=loaded, actor=researcher, override_screening=True).status == Study.Status.OPEN
    assert AuditEvent.objects.get(action="study.open").data == {"override": True, "open_hits": 1}


def test_the_api_lists_comparisons_and_judges_and_resolves_hits(loaded, researcher, client):
    from annotations.models import Response, StudyMembership

    StudyMembership.objects.create(study=loaded, user=researcher, role="owner")
    comparisons_build(study=loaded)
    Response.objects.filter(external_id="p3-beta").update(content="This is beta speaking.")
    responses_screen(study=loaded)
    client.force_login(researcher)
    page = client.get("/api/v1/studies/cmp/comparisons?limit=5").json()
    assert page["count"] == 30 and len(page["results"]) == 5
    assert {"system_first", "system_second", "submitted"} <= set(page["results"][0])
    hit = ScreeningHit.objects.get()
    resolved = client.post(f"/api/v1/studies/cmp/screening-hits/{hit.pk}/resolve", {"resolution": "excluded"})
    assert resolved.status_code == 200
    assert Comparison.objects.filter(study=loaded, excluded=True).count() == 2
    assert client.get("/api/v1/studies/cmp/judges").json()["count"] == 0
