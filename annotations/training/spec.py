"""What a training job is asked to do (TrainingSpec), what it gives back (TrainingResult), and the
fast checks that run in the web process before a job is queued. No torch here."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("reward", "dpo", "modpo", "sft", "merge")
KINDS_NEEDING_DATA = ("reward", "dpo", "modpo", "sft")
PRECISIONS = ("auto", "bf16", "fp32")
SNAPSHOT_FORMATS = ("trl-dpo", "reward", "multi-objective")
# How a job with several processes shares the work: "ddp" replicates the model on every process (LoRA, and full
# fine-tunes that fit on one GPU); "fsdp" shards a full fine-tune's weights, gradients and optimizer state.
DISTRIBUTED_STRATEGIES = ("ddp", "fsdp")
FORMATS_WITH_MARGINS = ("reward", "multi-objective")  # rows carry the strength-weighted margin of their label
WEIGHT_SUM_TOLERANCE = 1e-6
# Upper bounds of the numeric options: far above any run this platform is for, low enough that a typo (or a
# 5,000-digit number) is refused at launch instead of holding a GPU worker for ever or failing inside it.
OPTION_MAXIMUMS: dict[str, int | float] = {
    "max_steps": 1_000_000,
    "num_epochs": 1_000,
    "batch_size": 1_024,
    "gradient_accumulation_steps": 1_024,
    "max_length": 32_768,
    "logging_steps": 1_000_000,
    "save_steps": 1_000_000,
    "lora_r": 1_024,
    "lora_alpha": 4_096,
    "learning_rate": 1.0,
    "beta": 100.0,
    "seed": 2**32 - 1,
    "num_processes": 1_024,
    "num_machines": 128,
}


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a training job needs besides the dataset and output directories.

    kind: "reward" (Bradley-Terry reward model for `criterion`), "dpo" (on `criterion`), "modpo"
    (primary `criterion`, `weights` over criteria, `reward_models` for the other weighted criteria),
    "sft" (on the chosen responses of `criterion`), "merge" (weighted average of `merge_sources`).
    """

    kind: str
    base_model: str
    criterion: str | None = None
    # MODPO: weight of every criterion (primary included), on the simplex; reward model directory
    # of each other criterion with a nonzero weight.
    weights: dict[str, float] = field(default_factory=dict)
    reward_models: dict[str, str] = field(default_factory=dict)
    # Merge: model or adapter directories trained from `base_model`, and their weights.
    merge_sources: list[str] = field(default_factory=list)
    merge_weights: list[float] = field(default_factory=list)
    # Options
    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    precision: str = "auto"  # "auto": bf16 on a GPU that supports it, else fp32
    gradient_checkpointing: bool = False
    max_length: int = 1024
    beta: float = 0.1
    learning_rate: float = 5e-5
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    precompute_ref_log_probs: bool = False
    # Reward models: train with each pair's strength margin (5- and 7-point scales; TRL's margin column) instead
    # of a margin of 0. Off by default, so a run says when it used them.
    reward_margins: bool = False
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 100
    # Processes (one per GPU; on a CPU-only worker, CPU processes with gloo) across all machines, and machines.
    # batch_size is per process: the global batch is batch_size * num_processes * gradient_accumulation_steps.
    num_processes: int = 1
    num_machines: int = 1
    distributed: str = "ddp"  # with num_processes > 1: "ddp" or "fsdp" (full fine-tunes only)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingSpecError({"spec": f"unknown fields: {', '.join(unknown)}"})
        return cls(**data)


@dataclass(frozen=True)
class TrainingResult:
    """status: "completed" or "stopped" (should_stop() returned True; a checkpoint was saved and
    the next run_training on the same output_dir resumes from it)."""

    status: str
    output_dir: str
    global_step: int
    total_steps: int
    resumed_from_step: int | None
    metrics: dict[str, float]  # held-out evaluation of a completed run; empty when stopped

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


HELDOUT_PREFIX = "heldout/"
HELDOUT_FIGURES = ("accuracy", "margin", "loss", "n")


def heldout_key(criterion: str | None, figure: str) -> str:
    """The result-metrics key of one held-out figure: heldout/<criterion>/<accuracy|margin|loss|n>."""
    return f"{HELDOUT_PREFIX}{criterion}/{figure}"


def heldout_figures(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A result's held-out figures by criterion, {criterion: {"accuracy": .., "n": ..}}, from its
    heldout/<criterion>/<figure> metrics (pages and the API read them; no torch needed)."""
    figures: dict[str, dict[str, float]] = {}
    for key, value in (metrics or {}).items():
        if not key.startswith(HELDOUT_PREFIX) or not isinstance(value, int | float):
            continue
        criterion, _, figure = key[len(HELDOUT_PREFIX) :].rpartition("/")
        if criterion and figure in HELDOUT_FIGURES:
            figures.setdefault(criterion, {})[figure] = float(value)
    return dict(sorted(figures.items()))


class TrainingSpecError(ValueError):
    """A spec that cannot run. `errors` maps a spec field (or "dataset") to a message for a form."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


def validate_spec(spec: TrainingSpec, *, dataset_dir: str | Path | None = None) -> None:
    """Refuse a spec that cannot run, fast and without torch: raises TrainingSpecError.

    Checks the options, that the base model (and reward models, merge sources) load offline, and,
    when `dataset_dir` is given, that the snapshot's manifest fits the kind and criteria.
    """
    errors: dict[str, str] = {}
    if spec.kind not in KINDS:
        raise TrainingSpecError({"kind": f"unknown kind {spec.kind!r}; expected one of {', '.join(KINDS)}"})

    problem = offline_model_problem(spec.base_model)
    if problem:
        errors["base_model"] = problem
    if spec.precision not in PRECISIONS:
        errors["precision"] = f"expected one of {', '.join(PRECISIONS)}"
    positive_numbers = {
        "max_length": spec.max_length,
        "beta": spec.beta,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "logging_steps": spec.logging_steps,
        "save_steps": spec.save_steps,
        "lora_r": spec.lora_r,
        "lora_alpha": spec.lora_alpha,
    }
    for name, value in positive_numbers.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            errors[name] = "must be a positive number"
    if spec.max_steps <= 0 and not spec.num_epochs > 0:
        errors["num_epochs"] = "must be positive when max_steps is not set"
    if not 0 <= spec.seed:
        errors["seed"] = "must be zero or positive"
    for name, maximum in OPTION_MAXIMUMS.items():
        value = getattr(spec, name)
        if name not in errors and isinstance(value, int | float) and not value <= maximum:
            errors[name] = f"must be at most {maximum:,}"
    if not 0 <= spec.lora_dropout < 1:
        errors["lora_dropout"] = "must lie in [0, 1)"

    if spec.kind in KINDS_NEEDING_DATA and not spec.criterion:
        errors["criterion"] = "required for this kind"
    if spec.kind == "modpo":
        errors.update(_modpo_problems(spec))
    if spec.kind == "merge":
        errors.update(_merge_problems(spec))
    if spec.reward_margins and spec.kind != "reward":
        errors["reward_margins"] = "only reward models train with margins"
    errors.update(_distributed_problems(spec, errors))
    if dataset_dir is not None and spec.kind in KINDS_NEEDING_DATA:
        problem = _dataset_problem(spec, Path(dataset_dir))
        if problem:
            errors["dataset"] = problem
    if errors:
        raise TrainingSpecError(errors)


def _distributed_problems(spec: TrainingSpec, errors: dict[str, str]) -> dict[str, str]:
    """num_processes, num_machines and distributed. How many processes a worker may start is its own bound
    (its GPU count), checked when the job runs: the web process cannot see the worker's GPUs."""
    problems: dict[str, str] = {}
    for name in ("num_processes", "num_machines"):
        value = getattr(spec, name)
        if name not in errors and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            problems[name] = "must be a whole number, 1 or more"
    if problems or "num_processes" in errors or "num_machines" in errors:
        return problems
    if spec.num_processes % spec.num_machines:
        problems["num_processes"] = (
            f"must be a multiple of num_machines ({spec.num_machines}): every machine runs as many processes"
        )
    elif spec.num_machines > spec.num_processes:
        problems["num_machines"] = "cannot exceed num_processes"
    if spec.kind == "merge" and (spec.num_processes > 1 or spec.num_machines > 1):
        problems["num_processes"] = "a merge runs in one process"
    if spec.distributed not in DISTRIBUTED_STRATEGIES:
        problems["distributed"] = f"expected one of {', '.join(DISTRIBUTED_STRATEGIES)}"
    elif spec.distributed == "fsdp" and spec.use_lora:
        problems["distributed"] = "fsdp shards full fine-tunes (use_lora=false); LoRA jobs use ddp"
    return problems


def offline_model_problem(name: str) -> str | None:
    """Why `name` cannot be loaded without a network (None when it can): a local model directory,
    or a Hugging Face id already in the local cache."""
    if not name:
        return "required"
    path = Path(name)
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            return f"{name} is a directory without config.json or adapter_config.json"
        return None
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        return f"no model directory at {name}"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if not isinstance(cached, str):
        return (
            f"{name} is neither a local directory nor in the local Hugging Face cache; "
            "models are never downloaded by jobs, so download it on the worker first or give a directory"
        )
    return None


def _modpo_problems(spec: TrainingSpec) -> dict[str, str]:
    errors: dict[str, str] = {}
    weights = spec.weights
    if not weights or spec.criterion not in weights:
        errors["weights"] = "must give a weight to every criterion, the primary criterion included"
        return errors
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        errors["weights"] = "must be non-negative"
    elif abs(sum(weights.values()) - 1.0) > WEIGHT_SUM_TOLERANCE:
        errors["weights"] = f"must sum to 1 (they sum to {sum(weights.values()):.6g})"
    elif weights[spec.criterion] <= 0:
        errors["weights"] = "the primary criterion's weight must be positive (the loss divides by it)"
    needed = sorted(c for c, w in weights.items() if c != spec.criterion and w > 0)
    missing = [c for c in needed if c not in spec.reward_models]
    if missing:
        errors["reward_models"] = f"no reward model for weighted criteria: {', '.join(missing)}"
    else:
        for criterion in needed:
            problem = offline_model_problem(spec.reward_models[criterion])
            if problem:
                errors["reward_models"] = f"{criterion}: {problem}"
                break
    return errors


def _merge_problems(spec: TrainingSpec) -> dict[str, str]:
    errors: dict[str, str] = {}
    if len(spec.merge_sources) < 2:
        errors["merge_sources"] = "give at least two model or adapter directories"
    elif len(spec.merge_weights) != len(spec.merge_sources):
        errors["merge_weights"] = "give one weight per merge source"
    elif any(not math.isfinite(w) or w < 0 for w in spec.merge_weights) or sum(spec.merge_weights) <= 0:
        errors["merge_weights"] = "must be non-negative with a positive sum"
    for source in spec.merge_sources:
        if not Path(source).is_dir():
            errors["merge_sources"] = f"no model directory at {source}"
            break
    return errors


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    manifest_path = dataset_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no manifest.json in {dataset_dir}")
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def _dataset_problem(spec: TrainingSpec, dataset_dir: Path) -> str | None:
    try:
        manifest = read_manifest(dataset_dir)
    except (OSError, ValueError) as error:
        return str(error)
    if manifest.get("format") not in SNAPSHOT_FORMATS:
        return f"manifest format {manifest.get('format')!r} is not one of {', '.join(SNAPSHOT_FORMATS)}"
    criteria = manifest.get("criteria") or []
    if spec.criterion not in criteria:
        return f"criterion {spec.criterion!r} is not in the snapshot (it has {', '.join(criteria)})"
    if "train" not in (manifest.get("splits") or []):
        return "the snapshot has no train split"
    if spec.reward_margins and manifest["format"] not in FORMATS_WITH_MARGINS:
        return (
            f"reward margins need a snapshot that records them ({', '.join(FORMATS_WITH_MARGINS)}); "
            f"this one is {manifest['format']}"
        )
    return None
