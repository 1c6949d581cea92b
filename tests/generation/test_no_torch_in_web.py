"""The web process (pages, API, services, commands of this area) never imports torch."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import django
django.setup()
from django.urls import get_resolver, reverse
get_resolver().url_patterns
import annotations.views.generation, annotations.api.generation, annotations.services.generation
import annotations.services.followup, annotations.training.generate, annotations.tasks
import annotations.management.commands.generate_responses, annotations.management.commands.followup_study
reverse("generation-run-list", kwargs={"slug": "s"})
heavy = sorted(name for name in ("torch", "transformers", "trl", "peft") if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_generation_never_imports_torch_in_the_web_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings"}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "HEAVY:\n" in completed.stdout, completed.stdout
