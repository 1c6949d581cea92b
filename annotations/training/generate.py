"""Responses from a trained artifact: transformers `generate`, batched with left padding.

Pure core (no Django). The artifact is a training job's output directory: full weights, or a PEFT
(LoRA) adapter that is applied to its base model. Prompts are rendered with the chat template of the
base model's tokenizer (the tokenizer saved beside full weights is the base's own, with its template).

Importing this module is light: torch and transformers are imported inside `generate_responses`,
so the web process may use `GenerationSettings` and `settings_problems` to validate a form.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Messages = list[dict[str, str]]
ShouldStop = Callable[[], bool]
# on_batch(indices into the prompts, texts in the same order): called after every batch.
OnBatch = Callable[[list[int], list[str]], None]

MAX_NEW_TOKENS_LIMIT = 8192
MAX_BATCH_SIZE = 512


@dataclass(frozen=True)
class GenerationSettings:
    """temperature 0 means greedy decoding (top_p is then unused)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(GenerationSettings))


def settings_parse(raw: dict[str, Any]) -> tuple[GenerationSettings, dict[str, str]]:
    """Typed settings from form strings or JSON values, and per-field problems (empty when valid).
    Omitted or blank values keep the defaults; unknown names are problems."""
    defaults = GenerationSettings()
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, value in raw.items():
        if name not in SETTING_NAMES:
            problems[name] = "unknown setting"
            continue
        if value is None or value == "":
            continue
        kind = type(getattr(defaults, name))
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            if kind is int:
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                values[name] = int(number)
            else:
                values[name] = float(value)
        except (TypeError, ValueError):
            problems[name] = f"expected {'a whole number' if kind is int else 'a number'}"
    settings = dataclasses.replace(defaults, **values)
    problems.update({k: v for k, v in settings_problems(settings).items() if k not in problems})
    return settings, problems


def settings_problems(settings: GenerationSettings) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not 1 <= settings.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        problems["max_new_tokens"] = f"must lie between 1 and {MAX_NEW_TOKENS_LIMIT}"
    if not (math.isfinite(settings.temperature) and 0 <= settings.temperature <= 5):
        problems["temperature"] = "must lie between 0 (greedy) and 5"
    if not (math.isfinite(settings.top_p) and 0 < settings.top_p <= 1):
        problems["top_p"] = "must lie in (0, 1]"
    if not 0 <= settings.seed < 2**32:
        problems["seed"] = "must lie between 0 and 2^32 - 1"
    if not 1 <= settings.batch_size <= MAX_BATCH_SIZE:
        problems["batch_size"] = f"must lie between 1 and {MAX_BATCH_SIZE}"
    return problems


@dataclass(frozen=True)
class GenerationResult:
    """status: "completed", or "stopped" when should_stop() returned True before a batch."""

    status: str
    generated: int
    device: str


def artifact_problem(artifact_dir: str | Path) -> str | None:
    """Why a training job's output cannot generate text (None when it can), without torch."""
    path = Path(artifact_dir)
    if not path.is_dir():
        return f"{artifact_dir} does not exist"
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        return f"{artifact_dir} holds no model (no config.json or adapter_config.json)"
    return None


def _clean(messages: Messages) -> Messages:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def generate_responses(
    artifact_dir: str | Path,
    prompts: Sequence[Messages],
    settings: GenerationSettings,
    *,
    base_model: str | None = None,
    should_stop: ShouldStop | None = None,
    on_batch: OnBatch | None = None,
    device: str | None = None,
) -> GenerationResult:
    """Answer each prompt (a conversation ending with the help-seeker's turn) with the artifact's model.

    Batches of `settings.batch_size`; should_stop() is checked before every batch, on_batch() is
    called after each with the batch's prompt indices and texts. `base_model` is the model an adapter
    was trained from (default: the base recorded in the adapter's config).
    """
    import torch
    from transformers import set_seed

    from annotations.training.models import _adapter_base, is_adapter_dir, load_causal_lm, load_tokenizer

    problems = settings_problems(settings)
    if problems:
        raise ValueError("; ".join(f"{name}: {message}" for name, message in problems.items()))
    problem = artifact_problem(artifact_dir)
    if problem:
        raise ValueError(problem)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    adapter = is_adapter_dir(artifact_dir)
    base = base_model or (_adapter_base(artifact_dir) if adapter else str(artifact_dir))
    # The chat template is the base model's; a full-weights artifact carries the base's tokenizer.
    tokenizer = load_tokenizer(base if adapter else artifact_dir)
    tokenizer.padding_side = "left"
    model = load_causal_lm(artifact_dir, base_model=base if adapter else None, dtype=dtype).to(device)
    model.eval()
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    # Keep the end of long prompts so that the prompt and the answer fit in the model's context.
    context = getattr(model.config, "max_position_embeddings", None)
    max_prompt_tokens = max(1, context - settings.max_new_tokens) if context else None

    set_seed(settings.seed)
    sample = settings.temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": eos,
    }
    if sample:
        options.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        # Unset sampling knobs a model's own generation config may carry, so greedy is plainly greedy.
        options.update(temperature=None, top_p=None, top_k=None)

    generated = 0
    for start in range(0, len(prompts), settings.batch_size):
        if should_stop is not None and should_stop():
            return GenerationResult("stopped", generated, device)
        indices = list(range(start, min(start + settings.batch_size, len(prompts))))
        rendered = [
            tokenizer.apply_chat_template(
                _clean(prompts[i]), tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
            for i in indices
        ]
        if max_prompt_tokens is not None:
            rendered = [ids[-max_prompt_tokens:] for ids in rendered]
        batch = tokenizer.pad({"input_ids": rendered}, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(**batch, **options)
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts = [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        generated += len(texts)
        if on_batch is not None:
            on_batch(indices, texts)
    return GenerationResult("completed", generated, device)
