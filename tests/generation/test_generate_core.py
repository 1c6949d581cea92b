"""annotations.training.generate on its own (no Django): full weights and LoRA adapters, batching, greedy
determinism, sampling by seed, stopping between batches, settings validation."""

import pytest

from annotations.training.generate import GenerationSettings, generate_responses, settings_parse

PROMPTS = [
    [{"role": "user", "content": "i feel lonely on weekends"}],
    [{"role": "user", "content": "my exams are coming and i cannot sleep at night"}],
    [{"role": "system", "content": "be kind"}, {"role": "user", "content": "my friend stopped answering"}],
]


@pytest.fixture(scope="module")
def adapter(tiny_base, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_base),
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False),
    )
    directory = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(directory)
    return str(directory)


def run(artifact, settings, **options):
    batches = []
    result = generate_responses(artifact, PROMPTS, settings, on_batch=lambda i, t: batches.append((i, t)), **options)
    return result, batches


def test_full_weights_and_an_adapter_answer_every_prompt_in_batches(tiny_base, adapter):
    settings = GenerationSettings(max_new_tokens=5, batch_size=2)
    full, full_batches = run(tiny_base, settings)
    assert (full.status, full.generated, full.device) == ("completed", 3, "cpu")
    assert [indices for indices, _ in full_batches] == [[0, 1], [2]]
    assert run(tiny_base, settings)[1] == full_batches  # greedy is deterministic
    with_adapter, adapter_batches = run(adapter, settings)  # its base comes from the adapter's config
    assert with_adapter.generated == 3
    assert [t for _, texts in adapter_batches for t in texts] != [t for _, texts in full_batches for t in texts]
    # Left padding: a prompt's answer does not depend on what it is batched with.
    _, alone_batches = run(tiny_base, GenerationSettings(max_new_tokens=5, batch_size=1))
    assert [t for _, texts in alone_batches for t in texts] == [t for _, texts in full_batches for t in texts]


def test_sampling_follows_the_seed_and_stop_is_checked_before_each_batch(tiny_base):
    sampled = GenerationSettings(max_new_tokens=6, batch_size=3, temperature=1.0, seed=5)
    assert run(tiny_base, sampled)[1] == run(tiny_base, sampled)[1]
    calls = []

    def stop_after_first() -> bool:
        calls.append(1)
        return len(calls) > 1

    result, batches = run(tiny_base, GenerationSettings(max_new_tokens=2, batch_size=1), should_stop=stop_after_first)
    assert (result.status, result.generated, len(batches)) == ("stopped", 1, 1)


def test_settings_are_parsed_from_form_strings_and_checked():
    settings, problems = settings_parse({"max_new_tokens": "64", "temperature": "0.7", "seed": ""})
    assert problems == {} and (settings.max_new_tokens, settings.temperature, settings.seed) == (64, 0.7, 0)
    _, problems = settings_parse({"max_new_tokens": "1.5", "top_p": "0", "batch_size": True, "beam": 2})
    assert set(problems) == {"max_new_tokens", "top_p", "batch_size", "beam"}
    with pytest.raises(ValueError, match="temperature"):
        generate_responses("/nowhere", PROMPTS, GenerationSettings(temperature=-1))
