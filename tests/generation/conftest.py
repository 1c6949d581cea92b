"""Fixtures for generation and follow-up tests: a study with prompts and two systems, an export whose test
split names real prompts, a tiny model (built on the fly, nothing downloaded), and a fake chat endpoint."""

import io
import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from annotations.models import Comparison, JobStatus, PreferenceExport, Prompt, TrainingJob
from annotations.services.comparisons import comparisons_build
from annotations.services.importing import import_study_file
from annotations.training.synthetic import PROMPTS, phrase_vocabulary

VAR_DIR = Path(os.environ.get("EVALPLATFORM_VAR_DIR", "/tmp/evalplatform-test-var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SYSTEMS = ("brisk-base", "careful-v2")
PROMPT_COUNT = 6
TEST_PROMPTS = ("p-01", "p-04")  # the export's test split


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny causal LM with a tokenizer trained on the prompts' words."""
    import torch

    from annotations.training.tiny import build_tiny_model

    torch.set_num_threads(1)
    return str(build_tiny_model(tmp_path_factory.mktemp("gen") / "base", phrase_vocabulary()))


@pytest.fixture(autouse=True)
def artifacts_root(settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACTS_ROOT


def study_lines(systems=SYSTEMS, prompts: int = PROMPT_COUNT) -> bytes:
    lines = []
    for p in range(prompts):
        lines.append({"kind": "prompt", "id": f"p-{p:02d}", "messages": [{"role": "user", "content": PROMPTS[p]}]})
        for s, system in enumerate(systems):
            content = f"that sounds really hard and your feelings make sense ({s}.{p})"
            lines.append(
                {
                    "kind": "response",
                    "id": f"r-{p:02d}-{s}",
                    "prompt": f"p-{p:02d}",
                    "system": system,
                    "content": content,
                }
            )
    return "\n".join(json.dumps(line) for line in lines).encode()


@pytest.fixture
def filled_study(study, researcher):
    """Study s1 (owned by researcher, clinician a member) with 6 prompts answered by two systems, paired."""
    import_study_file(study=study, stream=io.BytesIO(study_lines()), filename="study.jsonl", actor=researcher)
    comparisons_build(study=study, actor=researcher)
    return study


def make_export(study, directory: Path, *, test_prompts=TEST_PROMPTS, manifest_extra=None) -> PreferenceExport:
    """A finished trl-dpo export of `study` whose rows carry the study's real comparison ids: the comparisons of
    `test_prompts` in test, the others in train (shaped like the export service's output)."""
    directory.mkdir(parents=True)
    rows = {"train": [], "test": []}
    for comparison in Comparison.objects.filter(study=study).select_related(
        "prompt", "response_first", "response_second"
    ):
        split = "test" if comparison.prompt.external_id in test_prompts else "train"
        rows[split].append(
            {
                "comparison_id": str(comparison.pk),
                "prompt": comparison.prompt.messages,
                "chosen": [{"role": "assistant", "content": comparison.response_first.content}],
                "rejected": [{"role": "assistant", "content": comparison.response_second.content}],
            }
        )
    for split, split_rows in rows.items():
        path = directory / "data" / "empathy" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in split_rows))
    manifest = {
        "format": "trl-dpo",
        "file_format": "jsonl",
        "criteria": ["empathy"],
        "splits": ["train", "test"],
        **(manifest_extra or {}),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return PreferenceExport.objects.create(
        study=study,
        format="trl-dpo",
        criterion_keys=["empathy"],
        status=JobStatus.SUCCEEDED,
        manifest=manifest,
        path=str(directory),
    )


@pytest.fixture
def split_export(filled_study, tmp_path):
    return make_export(filled_study, tmp_path / "export")


def test_prompt_pks(study) -> set[int]:
    return set(Prompt.objects.filter(study=study, external_id__in=TEST_PROMPTS).values_list("pk", flat=True))


test_prompt_pks.__test__ = False  # a helper, not a test


def finished_job(study, export, artifact_source: str, tmp_path: Path, *, kind: str = "merge", base_model: str = ""):
    """A succeeded job whose artifact is a copy of `artifact_source` (full weights): generation without training."""
    folder = tmp_path / f"job-{kind}"
    shutil.copytree(artifact_source, folder)
    return TrainingJob.objects.create(
        study=study,
        export=export,
        kind=kind,
        criterion_key="empathy",
        base_model=base_model or artifact_source,
        status=JobStatus.SUCCEEDED,
        artifacts_path=str(folder),
    )


# ---- a fake OpenAI-compatible endpoint ------------------------------------------------------------


class FakeChat:
    """Answers chat completions with an echo of the last user message; counts requests; can fail some."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_containing: str | None = None
        self.authorization: list[str] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                fake.requests.append(body)
                fake.authorization.append(self.headers.get("Authorization", ""))
                last = body["messages"][-1]["content"]
                if fake.fail_containing and fake.fail_containing in last:
                    self._send(400, {"error": {"message": "refused by the fake", "type": "invalid_request_error"}})
                    return
                self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": f"I hear you: {last}"},
                            }
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def fake_chat():
    server = FakeChat()
    yield server
    server.close()
