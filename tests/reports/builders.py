"""Study files for the report tests: prompts, responses and ratings written as the JSONL import format."""

from __future__ import annotations

import io
import json
from typing import Any

from annotations.models import Study
from annotations.services.importing import import_study_file

SYSTEMS = ("base", "new")


def prompt_records(n_prompts: int, systems: tuple[str, ...] = SYSTEMS) -> list[dict[str, Any]]:
    """One prompt per unit and one response per system, written by us (no real help-seeker text)."""
    records: list[dict[str, Any]] = []
    for unit in range(n_prompts):
        records.append(
            {
                "kind": "prompt",
                "id": f"u{unit}",
                "messages": [{"role": "user", "content": f"Test scenario {unit}: I feel stuck and tired lately."}],
            }
        )
        for system in systems:
            records.append(
                {
                    "kind": "response",
                    "id": f"u{unit}-{system}",
                    "prompt": f"u{unit}",
                    "system": system,
                    "content": f"A supportive reply number {unit} in the voice of {system}.",
                }
            )
    return records


def vote(
    *,
    rater: str,
    unit: int,
    criterion: str,
    value: int,
    swap: bool = False,
    judge: bool = False,
    first: str = SYSTEMS[0],
    second: str = SYSTEMS[1],
) -> dict[str, Any]:
    """A rating whose canonical value is `value` (negative favours `first`, the response imported first).

    With `swap` the file names the responses the other way round and negates the value, so the import's
    reorientation is exercised without changing what the rating says."""
    a, b, written = (second, first, -value) if swap else (first, second, value)
    record = {
        "kind": "judgment" if judge else "rating",
        ("judge" if judge else "rater"): rater,
        "response_a": f"u{unit}-{a}",
        "response_b": f"u{unit}-{b}",
        "criterion": criterion,
        "value": written,
    }
    return record


def import_records(study: Study, records: list[dict[str, Any]], filename: str = "study.jsonl") -> None:
    payload = "\n".join(json.dumps(record) for record in records).encode()
    import_study_file(study=study, stream=io.BytesIO(payload), filename=filename)


# The research's reported per-criterion shares, new / base / tie (percent of clinician ratings).
PAPER_SHARES = {"empathy": (85, 6, 9), "safety": (56, 32, 12), "overall": (64, 27, 9)}
CLINICIANS = tuple(f"clinician-{n}" for n in range(1, 7))
JUDGE = "judge-llm"


def paper_records(*, n_prompts: int = 100, with_judge: bool = True) -> list[dict[str, Any]]:
    """100 prompts, base against new, each rated by two of six clinicians on three criteria, with outcomes
    counted to give exactly the research's shares; the judge agrees with the clinicians most of the time."""
    assert n_prompts == 100, "shares are counted out of 100"
    records = prompt_records(n_prompts)
    for criterion, (new, base, tie) in PAPER_SHARES.items():
        # Canonical values: the base response is imported first, so +1 favours new, -1 favours base.
        outcomes = [1] * new + [-1] * base + [0] * tie
        for copy, shift in enumerate((0, 3)):
            shifted = outcomes[shift:] + outcomes[:shift]  # the same shares, slightly different items
            for unit in range(n_prompts):
                rater = CLINICIANS[(unit + copy * (1 + (unit // 6) % 5)) % 6]
                records.append(
                    vote(rater=rater, unit=unit, criterion=criterion, value=shifted[unit], swap=unit % 2 == 0)
                )
        if with_judge:
            judged = outcomes[1:] + outcomes[:1]
            for unit in range(n_prompts):
                records.append(vote(rater=JUDGE, unit=unit, criterion=criterion, value=judged[unit], judge=True))
    return records


def load_records_quickly(study: Study, records: list[dict[str, Any]]) -> None:
    """The same records written with a few bulk inserts instead of the importer (which checks every line and
    takes seconds for a thousand votes). Used where a test is about reports, not about importing; the
    oracle and research-table tests go through `import_records`."""
    from annotations.models import Assignment, Comparison, Judge, Judgment, Prompt, Rater, Rating, Response, System
    from annotations.services.studies import study_criteria

    criteria = {c.key: c for c in study_criteria(study)}
    prompts = Prompt.objects.bulk_create(
        Prompt(study=study, external_id=r["id"], messages=r["messages"], content_hash=r["id"])
        for r in records
        if r["kind"] == "prompt"
    )
    prompt_of = {p.external_id: p for p in prompts}
    systems = {
        name: System.objects.get_or_create(study=study, name=name)[0]
        for name in dict.fromkeys(r["system"] for r in records if r["kind"] == "response")
    }
    responses = Response.objects.bulk_create(
        Response(
            study=study,
            prompt=prompt_of[r["prompt"]],
            system=systems[r["system"]],
            external_id=r["id"],
            content=r["content"],
            content_hash=r["id"],
        )
        for r in records
        if r["kind"] == "response"
    )
    response_of = {r.external_id: r for r in responses}
    votes = [r for r in records if r["kind"] in ("rating", "judgment")]
    comparisons: dict[tuple[int, int], Comparison] = {}
    for v in votes:
        a, b = response_of[v["response_a"]], response_of[v["response_b"]]
        key = (min(a.pk, b.pk), max(a.pk, b.pk))
        if key not in comparisons:
            comparisons[key] = Comparison(
                study=study, prompt=a.prompt, response_first_id=key[0], response_second_id=key[1]
            )
    Comparison.objects.bulk_create(comparisons.values())
    raters = {
        (kind, label): Rater.objects.get_or_create(kind=kind, label=label)[0]
        for kind, label in dict.fromkeys(
            (Rater.Kind.EXTERNAL, v["rater"]) if v["kind"] == "rating" else (Rater.Kind.JUDGE, v["judge"])
            for v in votes
        )
    }
    judges = {
        label: Judge.objects.get_or_create(rater=rater)[0]
        for (kind, label), rater in raters.items()
        if kind == Rater.Kind.JUDGE
    }
    assignments: dict[tuple[int, int], Assignment] = {}
    ratings, judgments = [], []
    for v in votes:
        a, b = response_of[v["response_a"]], response_of[v["response_b"]]
        comparison = comparisons[(min(a.pk, b.pk), max(a.pk, b.pk))]
        value = v["value"] if a.pk < b.pk else -v["value"]
        criterion = criteria[v["criterion"]]
        if v["kind"] == "judgment":
            judgments.append(
                Judgment(judge=judges[v["judge"]], comparison=comparison, criterion=criterion, value=value)
            )
            continue
        rater = raters[(Rater.Kind.EXTERNAL, v["rater"])]
        key = (comparison.pk, rater.pk)
        if key not in assignments:
            assignments[key] = Assignment(
                study=study,
                comparison=comparison,
                rater=rater,
                status=Assignment.Status.SUBMITTED,
                purpose=Assignment.Purpose.IMPORTED,
            )
        ratings.append((assignments[key], criterion, value))
    Assignment.objects.bulk_create(assignments.values())
    Rating.objects.bulk_create(Rating(assignment=a, criterion=c, value=value) for a, c, value in ratings)
    Judgment.objects.bulk_create(judgments)
