"""A study of any size for the item explorer and raw data tests, written with a few bulk inserts.

Comparison i (0-based) has a known shape, so filters can be checked against arithmetic:
- systems cycle over the pairs base/new, base/third, new/third (i % 3);
- the clinician rates value V(i) = (i % 3) - 1 on every criterion, shown with the first response on the left
  when i is even; the external rater agrees, except when i % 4 == 0, where it gives -V(i) (a dispute
  unless V(i) is 0);
- the clinician flags both responses unacceptable when i % 10 == 0; a second external rater skips when i % 7 == 0;
- comparisons with i % 20 == 0 are gold; the judge agrees with the clinician, judged in both orders.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotations.models import Assignment, Comparison, Judge, Judgment, Prompt, Rater, Rating, Response, Study, System
from annotations.services.studies import study_create, study_criteria

CRITERIA = ["empathy", "safety"]
PAIRS = (("base", "new"), ("base", "third"), ("new", "third"))


def clinician_value(i: int) -> int:
    return (i % 3) - 1


def external_value(i: int) -> int:
    return -clinician_value(i) if i % 4 == 0 else clinician_value(i)


def is_disputed(i: int) -> bool:
    return clinician_value(i) != external_value(i)


@dataclass
class ItemStudy:
    study: Study
    comparisons: list[Comparison]
    systems: dict[str, System]
    clinician: Rater
    external: Rater
    skipper: Rater
    judge: Judge


def build_item_study(*, owner, n_comparisons: int, slug: str = "items", rationale: str = "") -> ItemStudy:
    study = study_create(slug=slug, title="Item study", owner=owner, criterion_keys=CRITERIA, overlap_k=2)
    criteria = study_criteria(study)
    systems = {name: System.objects.create(study=study, name=name) for name in ("base", "new", "third")}
    prompts = Prompt.objects.bulk_create(
        Prompt(
            study=study,
            external_id=f"p{i}",
            messages=[{"role": "user", "content": f"Scenario {i}: I have felt low for weeks."}],
            content_hash=f"p{i}",
        )
        for i in range(n_comparisons)
    )
    responses = Response.objects.bulk_create(
        Response(
            study=study,
            prompt=prompts[i],
            system=systems[name],
            external_id=f"p{i}-{name}",
            content=f"Reply {i} from {name}.",
            content_hash=f"p{i}-{name}",
        )
        for i in range(n_comparisons)
        for name in PAIRS[i % 3]
    )
    comparisons = Comparison.objects.bulk_create(
        Comparison(
            study=study,
            prompt=prompts[i],
            response_first=responses[2 * i],
            response_second=responses[2 * i + 1],
            is_gold=i % 20 == 0,
        )
        for i in range(n_comparisons)
    )
    clinician = Rater.objects.create(kind=Rater.Kind.CLINICIAN, label=f"{slug}-clinician")
    external = Rater.objects.create(kind=Rater.Kind.EXTERNAL, label=f"{slug}-external")
    skipper = Rater.objects.create(kind=Rater.Kind.EXTERNAL, label=f"{slug}-skipper")
    judge = Judge.objects.create(rater=Rater.objects.create(kind=Rater.Kind.JUDGE, label=f"{slug}-judge"))
    assignments = []
    for i, comparison in enumerate(comparisons):
        assignments.append(
            Assignment(
                study=study,
                comparison=comparison,
                rater=clinician,
                status=Assignment.Status.SUBMITTED,
                left_is_first=i % 2 == 0,
                both_unacceptable=i % 10 == 0,
                rationale=rationale,
                active_seconds=30 + i % 60,
                total_seconds=40 + i % 60,
            )
        )
        assignments.append(
            Assignment(
                study=study,
                comparison=comparison,
                rater=external,
                status=Assignment.Status.SUBMITTED,
                purpose=Assignment.Purpose.IMPORTED,
            )
        )
        if i % 7 == 0:
            assignments.append(
                Assignment(
                    study=study,
                    comparison=comparison,
                    rater=skipper,
                    status=Assignment.Status.SKIPPED,
                    skip_reason="Outside my expertise",
                )
            )
    assignments = Assignment.objects.bulk_create(assignments, batch_size=5000)
    index_of = {c.pk: i for i, c in enumerate(comparisons)}
    ratings = []
    for a in assignments:
        if a.status != Assignment.Status.SUBMITTED:
            continue
        i = index_of[a.comparison_id]
        value = clinician_value(i) if a.rater_id == clinician.pk else external_value(i)
        ratings.extend(Rating(assignment=a, criterion=c, value=value) for c in criteria)
    Rating.objects.bulk_create(ratings, batch_size=10000)
    Judgment.objects.bulk_create(
        (
            Judgment(
                judge=judge,
                comparison=comparison,
                criterion=c,
                value=clinician_value(i),
                consistency=Judgment.Consistency.CONSISTENT,
            )
            for i, comparison in enumerate(comparisons)
            for c in criteria
        ),
        batch_size=10000,
    )
    return ItemStudy(study, comparisons, systems, clinician, external, skipper, judge)
