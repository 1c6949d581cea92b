"""Tiny models built on the fly, for tests and demos: nothing is downloaded.

`build_tiny_model(directory, texts)` trains a word-level tokenizer on the given texts, builds a
two-layer Qwen2 causal LM from a config and saves both (with a ChatML-style chat template) to a
directory that `transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer` load offline.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

PAD_TOKEN = "<pad>"  # noqa: S105 (a token, not a secret)
UNK_TOKEN = "<unk>"  # noqa: S105 (a token, not a secret)
IM_START_TOKEN = "<|im_start|>"  # noqa: S105 (a token, not a secret)
IM_END_TOKEN = "<|im_end|>"  # noqa: S105 (a token, not a secret)
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN, IM_START_TOKEN, IM_END_TOKEN]

# ChatML, like Qwen's: the rendered prompt with add_generation_prompt=True is a token prefix of the
# rendered prompt + completion, which DPO and SFT need to find where the completion starts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Words every chat needs, whatever the texts are.
ROLE_WORDS = ["system", "user", "assistant"]


def build_tiny_tokenizer(texts: Iterable[str], *, vocab_size: int = 2000) -> Any:
    """Train a word-level tokenizer on `texts` and wrap it for transformers.

    Words are split on whitespace and punctuation; unknown words map to <unk>.
    Returns a `transformers.PreTrainedTokenizerFast` with the chat template set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    tokenizer.train_from_iterator([*ROLE_WORDS, *texts], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        eos_token=IM_END_TOKEN,
        bos_token=None,
        additional_special_tokens=[IM_START_TOKEN],
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.padding_side = "right"
    return wrapped


def tiny_model_config(
    vocab_size: int,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    pad_token_id: int = 0,
    eos_token_id: int | None = None,
    max_positions: int = 512,
) -> Any:
    """A Qwen2 config small enough to train in seconds on one CPU core."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        use_sliding_window=False,
    )


def build_tiny_model(
    directory: str | Path,
    texts: Iterable[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on `texts`, build a tiny causal LM for it and save both to `directory`.

    Returns the directory, which then serves as `base_model` of a TrainingSpec.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(texts)
    config = tiny_model_config(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def texts_of_rows(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every message text in dataset rows of any of the three formats (for training a tokenizer)."""
    texts: list[str] = []
    for row in rows:
        for key in ("prompt", "chosen", "rejected", "response_a", "response_b"):
            for message in row.get(key) or []:
                texts.append(message["content"])
    return texts
