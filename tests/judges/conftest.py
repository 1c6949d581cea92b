"""Judge fixtures: a study whose systems write replies of clearly different lengths, and the local
OpenAI-compatible server (annotations/judges/testserver.py) with deterministic verdicts and faults."""

import io
import json

import pytest

from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.services.studies import study_create

# System names that must never reach a clinician; short, medium and long replies.
JUDGE_SYSTEMS = {"terse-sys-a1": 1, "middle-sys-b2": 3, "verbose-sys-c3": 6}


def judge_study_jsonl(prompts: int) -> bytes:
    lines = []
    for p in range(prompts):
        lines.append(
            {"kind": "prompt", "id": f"p{p}", "messages": [{"role": "user", "content": f"I feel alone lately ({p})."}]}
        )
        for s, (system, sentences) in enumerate(JUDGE_SYSTEMS.items()):
            text = " ".join(f"Sentence {i} of a caring reply {p}." for i in range(sentences))
            lines.append({"kind": "response", "id": f"r{p}-{s}", "prompt": f"p{p}", "system": system, "content": text})
    return "\n".join(json.dumps(line) for line in lines).encode()


def build_judge_study(*, owner, slug: str = "js", prompts: int = 4, scale_points: int = 3, criterion_keys=None):
    study = study_create(
        slug=slug,
        title=f"Judge study {slug}",
        owner=owner,
        scale_points=scale_points,
        criterion_keys=criterion_keys or ["empathy", "safety", "overall"],
    )
    import_study_file(study=study, stream=io.BytesIO(judge_study_jsonl(prompts)), filename="s.jsonl", actor=owner)
    comparisons_build(study=study, actor=owner)
    return study


@pytest.fixture
def server(judge_server):
    judge_server.configure(faults=[], latency_ms=0, reset_stats=True)
    yield judge_server
    judge_server.configure(faults=[], latency_ms=0, reset_stats=True)
