"""Loading trained models (full weights or PEFT adapters) offline, scoring with reward models,
and merging ("soup")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def is_adapter_dir(directory: str | Path) -> bool:
    return (Path(directory) / "adapter_config.json").is_file()


def load_tokenizer(directory: str | Path) -> Any:
    """The tokenizer saved with a model. A tokenizer saved from a bare `tokenizers` object (our tiny models)
    records the class "TokenizersBackend", which AutoTokenizer in transformers 5 replaces with the model
    type's own class (Qwen2Tokenizer), encoding almost every word as one token: load it as what it is."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_path = Path(directory) / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if config.get("tokenizer_class") == "TokenizersBackend":
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(directory: str | Path, *, base_model: str | None = None, dtype: Any = None) -> Any:
    """A causal LM from a full model directory, or from an adapter directory merged into its base
    (`base_model`, else the base recorded in the adapter config)."""
    from transformers import AutoModelForCausalLM

    if not is_adapter_dir(directory):
        return AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
    from peft import PeftModel

    base_path = base_model or _adapter_base(directory)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, local_files_only=True)
    return PeftModel.from_pretrained(base, str(directory), local_files_only=True).merge_and_unload()


def load_reward_model(directory: str | Path, *, dtype: Any = None) -> Any:
    """A sequence-classification reward model (one score) from a reward job's output directory."""
    from transformers import AutoModelForSequenceClassification

    if not is_adapter_dir(directory):
        model = AutoModelForSequenceClassification.from_pretrained(
            str(directory), num_labels=1, dtype=dtype, local_files_only=True
        )
    else:
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(
            _adapter_base(directory), num_labels=1, dtype=dtype, local_files_only=True
        )
        model = PeftModel.from_pretrained(base, str(directory), local_files_only=True).merge_and_unload()
    model.eval()
    return model


def _adapter_base(directory: str | Path) -> str:
    config = json.loads((Path(directory) / "adapter_config.json").read_text(encoding="utf-8"))
    return config["base_model_name_or_path"]


@torch.no_grad()
def score_conversations(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    *,
    max_length: int,
    batch_size: int = 16,
) -> list[float]:
    """Reward of each conversation (prompt + response), batched, without gradients.

    Tokenized like TRL's RewardTrainer (the chat template over the whole conversation), right
    padded; the classification head reads the last non-pad token.
    """
    device = next(model.parameters()).device
    model.config.pad_token_id = tokenizer.pad_token_id
    scores: list[float] = []
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start : start + batch_size]
        ids = [
            tokenizer.apply_chat_template(list(conversation), tokenize=True, return_dict=True)["input_ids"][:max_length]
            for conversation in batch
        ]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for index, row in enumerate(ids):
            input_ids[index, : len(row)] = torch.tensor(row)
            attention_mask[index, : len(row)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        scores.extend(logits[:, 0].float().cpu().tolist())
    return scores


def score_pairs(
    model: Any, tokenizer: Any, pairs: Sequence[dict[str, Any]], *, max_length: int, batch_size: int = 16
) -> tuple[list[float], list[float]]:
    """(chosen scores, rejected scores) of preference pairs."""
    chosen = score_conversations(
        model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length=max_length, batch_size=batch_size
    )
    rejected = score_conversations(
        model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], max_length=max_length, batch_size=batch_size
    )
    return chosen, rejected


def pairwise_accuracy(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> float:
    """Share of pairs whose chosen response scores strictly higher (a tie counts as wrong)."""
    if not chosen_scores:
        return float("nan")
    wins = sum(1 for c, r in zip(chosen_scores, rejected_scores, strict=True) if c > r)
    return wins / len(chosen_scores)


def merge_models(sources: Sequence[str | Path], weights: Sequence[float], *, base_model: str | None = None) -> Any:
    """Weighted average of the full weights of models trained from one base ("soup").

    Adapters are first merged into the base, so adapters and full models mix; weights are
    normalized to sum to 1, so with weights (1, 0) the result equals the first model.
    """
    total = float(sum(weights))
    models = [load_causal_lm(source, base_model=base_model) for source in sources]
    states = [model.state_dict() for model in models]
    keys = list(states[0])
    for source, state in zip(sources, states, strict=True):
        if list(state) != keys or any(state[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"{source} does not have the same architecture as {sources[0]}; cannot merge")
    merged = {}
    for key in keys:
        reference = states[0][key]
        if not reference.is_floating_point():
            merged[key] = reference
            continue
        average = sum((w / total) * state[key].float() for w, state in zip(weights, states, strict=True))
        merged[key] = average.to(reference.dtype)
    result = models[0]
    result.load_state_dict(merged)
    return result
