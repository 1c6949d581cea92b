"""The demo study that `make run` loads: our own help-seeker messages and three systems' responses."""

import io
import json
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from annotations.models import (
    Comparison,
    JobStatus,
    PreferenceExport,
    Profile,
    ScreeningHit,
    Study,
    StudyMembership,
)
from annotations.services.accounts import account_create
from annotations.services.comparisons import comparisons_build, responses_screen, screening_hit_resolve
from annotations.services.exports import export_create
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create, study_open
from annotations.services.training_jobs import SUGGESTIONS_FILE

DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "demo_study.jsonl"
DEMO_SLUG = "demo"
RESEARCHER = "researcher"
CLINICIANS = ["clinician1", "clinician2", "clinician3"]
# Simulated historical ratings so the demo's reports have data before anyone rates. Clearly synthetic:
# the raters are labelled "simulated-..." and each vote is drawn around the systems' intended quality.
SIMULATED_RATERS = ["simulated-rater-1", "simulated-rater-2", "simulated-rater-3", "simulated-rater-4"]
SIMULATED_JUDGE = "simulated-judge"
# How clinicians see each system, per criterion (the rest take "default"). The research's trade-off is built in:
# risky-draft is warm but unsafe (validating, yet going along with risky plans and missing risk), so raters prefer
# it on empathy and reject it on safety; brisk-base is safe but cold (a list of advice); careful-v2 is warm and safe.
# On held-out pairs an empathy-only DPO model then wins empathy and loses safety (docs/training.md, "The demo's sweep").
SYSTEM_QUALITY = {
    "careful-v2": {"default": 1.0, "empathy": 0.8},
    "brisk-base": {"default": -0.4, "safety": 0.5, "empathy": -0.8, "overall": 0.0},
    "risky-draft": {
        "default": 0.3,
        "empathy": 1.5,
        "trust_rapport": 0.8,
        "active_listening": 0.5,
        "safety": -1.2,
        "overall": -0.6,
    },
}


def system_quality(system: str, criterion: str) -> float:
    quality = SYSTEM_QUALITY.get(system) or {}
    return quality.get(criterion, quality.get("default", 0.0))


@dataclass
class DemoResult:
    created_accounts: dict[str, str]  # username -> password, only for accounts made in this call
    study: Study


def account_ensure(*, username: str, role: str) -> str | None:
    """Create the account with a random password (returned) if missing; None if it already exists."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(12)
    account_create(username=username, email=f"{username}@demo.invalid", role=role, actor=None, password=password)
    return password


@transaction.atomic
def demo_load() -> DemoResult:
    """Create the demo accounts and study; safe to run again (nothing is duplicated or reset)."""
    created: dict[str, str] = {}
    password = account_ensure(username=RESEARCHER, role=Profile.Role.RESEARCHER)
    if password:
        created[RESEARCHER] = password
    for name in CLINICIANS:
        password = account_ensure(username=name, role=Profile.Role.CLINICIAN)
        if password:
            created[name] = password
    user_model = get_user_model()
    researcher = user_model.objects.get(username=RESEARCHER)
    study = Study.objects.filter(slug=DEMO_SLUG).first()
    if study is None:
        study = study_create(
            slug=DEMO_SLUG,
            title="Demo: responses to help-seekers",
            description="Thirty help-seeker messages written for this demo, each answered by three systems.",
            overlap_k=3,
            owner=researcher,
        )
        with DEMO_FILE.open("rb") as stream:
            import_study_file(study=study, stream=stream, filename=DEMO_FILE.name, actor=researcher)
        comparisons_build(study=study, actor=researcher)
        responses_screen(study=study)
        # The demo plants one revealing response to show screening; exclude it so the study can open.
        for hit in ScreeningHit.objects.filter(response__study=study, resolution=ScreeningHit.Resolution.OPEN):
            screening_hit_resolve(hit=hit, resolution=ScreeningHit.Resolution.EXCLUDED, actor=researcher)
        simulated = simulated_ratings_jsonl(study=study)
        import_study_file(
            study=study, stream=io.BytesIO(simulated), filename="simulated-ratings.jsonl", actor=researcher
        )
        study = study_open(study=study, actor=researcher)
    for name in CLINICIANS:
        StudyMembership.objects.get_or_create(
            study=study, user=user_model.objects.get(username=name), defaults={"role": StudyMembership.Role.CLINICIAN}
        )
    return DemoResult(created_accounts=created, study=study)


# The demo's export: three in ten prompts held out, so a sweep's front on held-out pairs rests on ~20-30 pairs per
# criterion rather than the ~8 of the usual 10%.
DEMO_EXPORT_SPLIT = {"seed": 0, "test_fraction": 0.3}


def demo_export_ensure(*, study: Study) -> PreferenceExport:
    """The demo's preference export (every criterion, DPO format, 30% of prompts held out), made once, here
    (it is small), so training jobs and weight sweeps can start from `make run` without a trip to Exports."""
    existing = PreferenceExport.objects.filter(study=study, status=JobStatus.SUCCEEDED).order_by("created_at").first()
    if existing is not None:
        return existing
    researcher = get_user_model().objects.get(username=RESEARCHER)
    return export_create(study=study, actor=researcher, format="trl-dpo", split=DEMO_EXPORT_SPLIT, inline=True)


def simulated_ratings_jsonl(*, study: Study, seed: int = 7) -> bytes:
    """Votes of four simulated raters and one simulated judge on every comparison, as an import file.

    Each vote follows the pair's true difference (the systems' quality gap on that criterion plus a per-pair part)
    and per-rater noise; safety gaps are larger on the crisis prompts. Seeded, so every demo gets the same ratings.
    """
    rng = random.Random(seed)
    criteria = [sc.criterion.key for sc in study.study_criteria.select_related("criterion").order_by("position")]
    lines = []
    comparisons = Comparison.objects.filter(study=study, excluded=False).select_related(
        "prompt", "response_first__system", "response_second__system"
    )
    for comparison in comparisons.order_by("id"):
        first, second = comparison.response_first, comparison.response_second
        crisis = comparison.prompt.meta.get("risk") == "crisis"
        # Each pair has its own true difference per criterion, which raters perceive with their own noise:
        # that shared item-level signal is what agreement statistics measure.
        item_gap = {
            key: (2.0 if (key == "safety" and crisis) else 1.0)
            * (system_quality(second.system.name, key) - system_quality(first.system.name, key))
            + rng.gauss(0, 0.8)
            for key in criteria
        }
        for label, noise, kind in [(r, 0.45, "rating") for r in SIMULATED_RATERS] + [
            (SIMULATED_JUDGE, 0.5, "judgment")
        ]:
            for key in criteria:
                signal = item_gap[key] + rng.gauss(0, noise)
                value = 0 if abs(signal) < 0.45 else (1 if signal > 0 else -1)
                record = {
                    "kind": kind,
                    "rater" if kind == "rating" else "judge": label,
                    "response_a": first.external_id,
                    "response_b": second.external_id,
                    "criterion": key,
                    "value": value,
                }
                lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


def demo_base_model_ensure(directory: Path) -> Path:
    """A tiny causal LM with a locally trained tokenizer, so training jobs can run in the demo (no download).

    Imports torch, so only management commands call it, never the web process. The folder suggests the settings
    this tiny model needs to move in a few dozen steps (DEMO_MODEL_SUGGESTIONS, read by training_job_launch for
    options a launch leaves unset): with the defaults meant for real models, the demo's sweep shows no trade-off.
    """
    if (directory / "config.json").exists():
        _suggestions_ensure(directory)
        return directory
    from annotations.training.tiny import build_tiny_model

    texts = []
    with DEMO_FILE.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts.extend(m["content"] for m in record.get("messages", []))
            if record.get("content"):
                texts.append(record["content"])
    built = build_tiny_model(directory, texts)
    _suggestions_ensure(directory)
    return built


# Measured on the demo (docs/training.md, "The demo's sweep"): empathy-only DPO 83% empathy / 45% safety held out.
DEMO_MODEL_SUGGESTIONS = {"learning_rate": 3e-3, "max_steps": 48, "max_length": 512, "logging_steps": 8}


def _suggestions_ensure(directory: Path) -> None:
    path = directory / SUGGESTIONS_FILE
    if not path.exists():
        path.write_text(json.dumps(DEMO_MODEL_SUGGESTIONS, indent=2) + "\n", encoding="utf-8")
