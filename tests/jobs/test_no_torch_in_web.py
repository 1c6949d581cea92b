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
get_resolver().url_patterns  # imports every view and API module of the URL conf
import annotations.views.jobs, annotations.api.jobs, annotations.services.training_jobs, annotations.tasks
import annotations.management.commands.training_job
reverse("job-list", kwargs={"slug": "s"})
heavy = sorted(name for name in ("torch", "transformers", "trl", "peft") if name in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_the_web_process_never_imports_torch():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "evalplatform.test_settings"}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "HEAVY:\n" in completed.stdout, completed.stdout
