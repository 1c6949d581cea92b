"""Building a study's comparisons, and screening responses for text that would reveal their system."""

import itertools
import random
import re
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.models import Comparison, Response, ScreeningHit, Study, System
from annotations.services.audit import audit_record

# Model and vendor names, and phrases that give away an AI system or its maker.
REVEALING_TERMS = [
    "openai",
    "chatgpt",
    "gpt-3",
    "gpt-3.5",
    "gpt-4",
    "gpt-4o",
    "gpt-5",
    "gpt",
    "anthropic",
    "claude",
    "google",
    "gemini",
    "bard",
    "deepmind",
    "meta ai",
    "llama",
    "mistral",
    "mixtral",
    "qwen",
    "alibaba",
    "deepseek",
    "copilot",
    "microsoft",
    "phi-3",
    "vicuna",
    "falcon",
    "as an ai language model",
    "as a language model",
    "language model developed by",
    "i am an ai",
    "i'm an ai",
    "as an ai assistant",
    "large language model",
    "trained by",
]


@dataclass(frozen=True)
class ScreeningResult:
    hits_created: int
    open_hits: int


def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(term) + r"(?![\w])", re.IGNORECASE)


def revealing_terms_for(system_names: list[str]) -> list[str]:
    """The fixed list plus each system's own name and its distinctive parts (e.g. 'careful-v2' -> 'careful-v2')."""
    terms = list(REVEALING_TERMS)
    for name in system_names:
        terms.append(name)
    return sorted(set(t.lower() for t in terms if len(t) >= 3))


@transaction.atomic
def responses_screen(*, study: Study) -> ScreeningResult:
    terms = revealing_terms_for(list(System.objects.filter(study=study).values_list("name", flat=True)))
    patterns = [(t, _term_pattern(t)) for t in terms]
    existing = set(ScreeningHit.objects.filter(response__study=study).values_list("response_id", "term"))
    new_hits = []
    for response in Response.objects.filter(study=study).only("pk", "content").iterator(chunk_size=2000):
        for term, pattern in patterns:
            match = pattern.search(response.content)
            if match and (response.pk, term) not in existing:
                start, end = max(0, match.start() - 40), min(len(response.content), match.end() + 40)
                new_hits.append(ScreeningHit(response=response, term=term, snippet=response.content[start:end]))
    ScreeningHit.objects.bulk_create(new_hits, ignore_conflicts=True)
    open_hits = ScreeningHit.objects.filter(
        response__study=study, resolution=ScreeningHit.Resolution.OPEN, response__excluded=False
    ).count()
    return ScreeningResult(hits_created=len(new_hits), open_hits=open_hits)


@transaction.atomic
def screening_hit_resolve(*, hit: ScreeningHit, resolution: str, actor: AbstractBaseUser | None) -> ScreeningHit:
    """Exclude the response (and its comparisons) or dismiss the hit as not revealing."""
    if resolution not in (ScreeningHit.Resolution.EXCLUDED, ScreeningHit.Resolution.DISMISSED):
        raise ValidationError({"resolution": "expected 'excluded' or 'dismissed'"})
    hit.resolution = resolution
    hit.save(update_fields=["resolution"])
    if resolution == ScreeningHit.Resolution.EXCLUDED:
        Response.objects.filter(pk=hit.response_id).update(excluded=True)
        Comparison.objects.filter(response_first_id=hit.response_id).update(excluded=True)
        Comparison.objects.filter(response_second_id=hit.response_id).update(excluded=True)
    audit_record(
        actor=actor, action="screening.resolve", study=hit.response.study, obj=hit, data={"resolution": resolution}
    )
    return hit


@transaction.atomic
def comparisons_build(
    *,
    study: Study,
    strategy: str = "all_pairs",
    reference_system: str | None = None,
    budget: int | None = None,
    seed: int = 0,
    actor: AbstractBaseUser | None = None,
) -> int:
    """Create comparisons for every prompt: all pairs of systems, or each system against a reference.

    With a budget, a seeded sample of the candidate pairs is kept. Existing comparisons are left alone,
    so building again is safe. Returns the number created.
    """
    if strategy not in ("all_pairs", "reference"):
        raise ValidationError({"strategy": "expected 'all_pairs' or 'reference'"})
    reference_pk = None
    if strategy == "reference":
        if not reference_system:
            raise ValidationError({"reference_system": "required for the 'reference' strategy"})
        reference_pk = System.objects.filter(study=study, name=reference_system).values_list("pk", flat=True).first()
        if reference_pk is None:
            raise ValidationError({"reference_system": f"no system named {reference_system!r} in this study"})
    if budget is not None and budget < 1:
        raise ValidationError({"budget": "must be a positive number of comparisons"})

    by_prompt: dict[int, list[tuple[int, int]]] = {}
    for pk, prompt_id, system_id in (
        Response.objects.filter(study=study, excluded=False)
        .order_by("prompt_id", "pk")
        .values_list("pk", "prompt_id", "system_id")
    ):
        by_prompt.setdefault(prompt_id, []).append((pk, system_id))
    candidates: list[tuple[int, int, int]] = []
    for prompt_id, responses in by_prompt.items():
        for (a, sys_a), (b, sys_b) in itertools.combinations(responses, 2):
            if sys_a == sys_b:
                continue
            if reference_pk is not None and reference_pk not in (sys_a, sys_b):
                continue
            candidates.append((prompt_id, min(a, b), max(a, b)))
    existing = set(Comparison.objects.filter(study=study).values_list("response_first_id", "response_second_id"))
    candidates = [c for c in candidates if (c[1], c[2]) not in existing]
    if budget is not None:
        remaining = max(0, budget - len(existing))
        candidates = sorted(random.Random(seed).sample(candidates, min(remaining, len(candidates))))
    created = Comparison.objects.bulk_create(
        [Comparison(study=study, prompt_id=p, response_first_id=a, response_second_id=b) for p, a, b in candidates],
        ignore_conflicts=True,
    )
    audit_record(
        actor=actor,
        action="comparisons.build",
        study=study,
        obj=study,
        data={
            "strategy": strategy,
            "reference_system": reference_system,
            "budget": budget,
            "seed": seed,
            "created": len(created),
        },
    )
    return len(created)
