"""Training core: reward models, DPO, MODPO, SFT and merges on TRL/PEFT/transformers.

Importing this package is light (no torch): the web process uses TrainingSpec and validate_spec;
run_training imports the heavy libraries when called, in the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from annotations.training.spec import (
    KINDS,
    TrainingResult,
    TrainingSpec,
    TrainingSpecError,
    offline_model_problem,
    validate_spec,
)

if TYPE_CHECKING:
    from annotations.training.runner import Report, ShouldStop

__all__ = [
    "KINDS",
    "TrainingResult",
    "TrainingSpec",
    "TrainingSpecError",
    "offline_model_problem",
    "run_training",
    "validate_spec",
]


def run_training(
    spec: TrainingSpec,
    *,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    should_stop: ShouldStop | None = None,
    report: Report | None = None,
) -> TrainingResult:
    """See annotations.training.runner.run_training (imported here on call: it imports torch)."""
    from annotations.training import runner

    return runner.run_training(
        spec, dataset_dir=dataset_dir, output_dir=output_dir, should_stop=should_stop, report=report
    )
