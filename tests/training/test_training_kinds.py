"""Every kind end to end on a tiny model, the MODPO loss and margin path, stop and resume."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from annotations.training import TrainingSpec, run_training  # noqa: E402
from annotations.training import modpo as modpo_module  # noqa: E402
from annotations.training.models import load_tokenizer  # noqa: E402
from annotations.training.synthetic import phrase_vocabulary, write_snapshot  # noqa: E402
from annotations.training.tiny import build_tiny_model  # noqa: E402

torch.set_num_threads(1)
CRITERIA = ["empathy", "safety", "active_listening"]
FAST = {"batch_size": 8, "logging_steps": 2, "learning_rate": 3e-3, "max_length": 96}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    return {
        "root": root,
        "base": str(build_tiny_model(root / "base", phrase_vocabulary(CRITERIA))),
        "pairs": write_snapshot(root / "pairs", criteria=CRITERIA, train_count=64, test_count=32),
        "multi": write_snapshot(root / "multi", snapshot_format="multi-objective", criteria=CRITERIA),
    }


@pytest.fixture(scope="module")
def safety_reward_model(workspace):
    """A reward model for safety; the MODPO tests use it for the margins."""
    spec = TrainingSpec(kind="reward", base_model=workspace["base"], criterion="safety", max_steps=24, **FAST)
    result = run_training(spec, dataset_dir=workspace["pairs"], output_dir=workspace["root"] / "rm-safety")
    return result


def modpo_spec(workspace, reward_model_dir, **overrides):
    options = {
        "kind": "modpo",
        "base_model": workspace["base"],
        "criterion": "empathy",
        "weights": {"empathy": 0.6, "safety": 0.4, "active_listening": 0.0},
        "reward_models": {"safety": str(reward_model_dir)},
        "max_steps": 4,
        **FAST,
    }
    options.update(overrides)
    return TrainingSpec(**options)


def test_a_reward_model_ranks_held_out_pairs(safety_reward_model, workspace):
    assert safety_reward_model.status == "completed"
    assert safety_reward_model.metrics["eval_pairwise_accuracy"] > 0.9
    out = workspace["root"] / "rm-safety"
    for name in ("adapter_config.json", "tokenizer.json", "training_config.json", "metrics.jsonl", "manifest.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("checkpoint-*"))


def test_dpo_and_sft_run_end_to_end_and_report(workspace):
    for kind in ("dpo", "sft"):
        reports = []
        spec = TrainingSpec(kind=kind, base_model=workspace["base"], criterion="empathy", max_steps=4, **FAST)
        result = run_training(
            spec,
            dataset_dir=workspace["pairs"],
            output_dir=workspace["root"] / kind,
            report=lambda step, total, epoch, metrics, reports=reports: reports.append((step, total, metrics)),
        )
        assert result.status == "completed" and result.global_step == 4
        assert [r[0] for r in reports if "loss" in r[2]] == [2, 4]
        assert all(r[1] == 4 for r in reports)
        assert "eval_loss" in result.metrics
        if kind == "dpo":
            assert "rewards/accuracies" in reports[0][2]
        logged = [json.loads(line) for line in (workspace["root"] / kind / "metrics.jsonl").read_text().splitlines()]
        assert [entry["step"] for entry in logged if "loss" in entry] == [2, 4]
        card = (workspace["root"] / kind / "README.md").read_text()
        assert f"base model: `{workspace['base']}`" in card and "None" not in card
        assert "eval_loss" in card


def test_modpo_margins_reach_the_loss_unchanged(workspace, safety_reward_model, monkeypatch):
    seen = []
    real_loss = modpo_module.modpo_loss

    def spying_loss(chosen, rejected, margins, **kwargs):
        seen.extend(margins.tolist())
        return real_loss(chosen, rejected, margins, **kwargs)

    monkeypatch.setattr(modpo_module, "modpo_loss", spying_loss)
    out = workspace["root"] / "modpo"
    spec = modpo_spec(workspace, safety_reward_model.output_dir, max_steps=-1, num_epochs=1)
    result = run_training(spec, dataset_dir=workspace["multi"], output_dir=out)
    assert result.status == "completed"
    stored = [json.loads(line)["margin"] for line in (out / "modpo_margins.jsonl").read_text().splitlines()]
    # The reward model scores chosen and rejected differently, so the margins are not all zero.
    assert max(abs(m) for m in stored) > 1e-3
    # One epoch of training plus one evaluation pass: every stored margin reached the loss once.
    assert sorted(seen) == pytest.approx(sorted(stored), abs=1e-6)


def perturbed_policy(base):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def losses_on_one_batch(workspace, tmp_path, margin, primary_weight, pair_count):
    """DPO and MODPO losses of the same policy, reference and batch (full fine-tuning)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from annotations.training.data import preference_pairs
    from annotations.training.models import load_tokenizer
    from annotations.training.modpo import MARGIN_COLUMN, DataCollatorForMODPO, MODPOTrainer

    tokenizer = load_tokenizer(workspace["base"])
    pairs = preference_pairs(workspace["pairs"], "empathy", "train")[:pair_count]
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    policy = perturbed_policy(workspace["base"])

    def build(trainer_class, dataset_rows, **extra):
        args = DPOConfig(
            output_dir=str(tmp_path / trainer_class.__name__),
            report_to="none",
            bf16=False,
            gradient_checkpointing=False,
            beta=0.1,
            max_length=96,
        )
        return trainer_class(
            model=perturbed_policy(workspace["base"]),
            ref_model=AutoModelForCausalLM.from_pretrained(workspace["base"], local_files_only=True),
            args=args,
            train_dataset=Dataset.from_list(dataset_rows),
            processing_class=tokenizer,
            **extra,
        )

    del policy
    dpo = build(DPOTrainer, rows)
    modpo = build(
        MODPOTrainer,
        [{**row, MARGIN_COLUMN: margin} for row in rows],
        primary_weight=primary_weight,
        data_collator=DataCollatorForMODPO(pad_token_id=tokenizer.pad_token_id, max_length=96),
    )
    with torch.no_grad():
        dpo_batch = dpo._prepare_inputs(dpo.data_collator([dpo.train_dataset[i] for i in range(pair_count)]))
        modpo_batch = modpo._prepare_inputs(modpo.data_collator([modpo.train_dataset[i] for i in range(pair_count)]))
        assert modpo_batch[MARGIN_COLUMN].tolist() == pytest.approx([margin] * pair_count)
        return dpo.compute_loss(dpo.model, dpo_batch).item(), modpo.compute_loss(modpo.model, modpo_batch).item()


def test_modpo_with_weight_one_on_the_primary_is_dpo(workspace, tmp_path):
    dpo_loss, modpo_loss = losses_on_one_batch(workspace, tmp_path, margin=0.0, primary_weight=1.0, pair_count=4)
    assert abs(dpo_loss - math.log(2)) > 1e-3  # the policy differs from the reference
    assert modpo_loss == pytest.approx(dpo_loss, abs=1e-6)


def test_modpo_loss_moves_with_the_margin_as_the_formula_says(workspace, tmp_path):
    dpo_loss, with_positive_margin = losses_on_one_batch(
        workspace, tmp_path, margin=0.8, primary_weight=0.5, pair_count=1
    )
    # One pair: DPO loss = softplus(-z) with z = beta * (logratio_w - logratio_l); recover z.
    z = -math.log(math.expm1(dpo_loss))
    expected = math.log1p(math.exp(-(z / 0.5 - 0.8 / 0.5)))
    assert with_positive_margin == pytest.approx(expected, rel=1e-5)
    _, with_negative_margin = losses_on_one_batch(workspace, tmp_path, margin=-0.8, primary_weight=0.5, pair_count=1)
    # A pair the other criteria already favour (positive margin) asks more of the policy.
    assert with_negative_margin < with_positive_margin


def test_the_collator_refuses_rows_without_margins():
    from annotations.training.modpo import DataCollatorForMODPO

    collator = DataCollatorForMODPO(pad_token_id=0)
    with pytest.raises(KeyError, match="dropped"):
        collator([{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3]}])


def test_a_merge_with_weights_one_zero_equals_the_first_model(workspace, safety_reward_model):
    from annotations.training.models import load_causal_lm

    sources = []
    for seed in (1, 2):
        spec = TrainingSpec(
            kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=2, seed=seed, **FAST
        )
        sources.append(
            str(
                run_training(
                    spec, dataset_dir=workspace["pairs"], output_dir=workspace["root"] / f"dpo-seed{seed}"
                ).output_dir
            )
        )
    sources.append(str(workspace["root"] / "modpo-for-merge"))
    run_training(
        modpo_spec(workspace, safety_reward_model.output_dir, max_steps=2),
        dataset_dir=workspace["multi"],
        output_dir=sources[2],
    )

    def merged(weights, name):
        spec = TrainingSpec(
            kind="merge", base_model=workspace["base"], merge_sources=sources[: len(weights)], merge_weights=weights
        )
        return load_causal_lm(run_training(spec, dataset_dir=None, output_dir=workspace["root"] / name).output_dir)

    first = load_causal_lm(sources[0], base_model=workspace["base"]).state_dict()
    second = load_causal_lm(sources[1], base_model=workspace["base"]).state_dict()
    one_zero = merged([1.0, 0.0], "merge-1-0").state_dict()
    assert all(torch.equal(one_zero[key], first[key]) for key in first)
    half = merged([0.5, 0.5, 0.0], "merge-half").state_dict()
    key = next(k for k in first if "q_proj.weight" in k and not torch.equal(first[k], second[k]))
    torch.testing.assert_close(half[key], (first[key] + second[key]) / 2)


def test_should_stop_leaves_a_checkpoint_and_a_second_run_resumes(workspace):
    out = workspace["root"] / "stop-resume"
    spec = TrainingSpec(
        kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=8, save_steps=100, **FAST
    )
    checks = []

    def stop_on_third_check():
        checks.append(1)
        return len(checks) >= 3

    stopped = run_training(spec, dataset_dir=workspace["pairs"], output_dir=out, should_stop=stop_on_third_check)
    assert stopped.status == "stopped" and stopped.global_step == 3
    assert (out / "checkpoint-3").is_dir()
    assert not (out / "result.json").exists()

    steps = []
    resumed = run_training(
        spec,
        dataset_dir=workspace["pairs"],
        output_dir=out,
        report=lambda step, total, epoch, metrics: steps.append(step),
    )
    assert resumed.status == "completed"
    assert resumed.resumed_from_step == 3 and resumed.global_step == 8
    assert min(steps) > 3
    # A completed run is not trained again.
    again = run_training(spec, dataset_dir=workspace["pairs"], output_dir=out, should_stop=lambda: True)
    assert again == resumed


def test_a_run_refuses_an_output_dir_of_another_spec(workspace):
    out = workspace["root"] / "stop-resume-other"
    spec = TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=2, **FAST)
    run_training(spec, dataset_dir=workspace["pairs"], output_dir=out, should_stop=lambda: True)
    other = TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=2, beta=0.5, **FAST)
    with pytest.raises(ValueError, match="another spec"):
        run_training(other, dataset_dir=workspace["pairs"], output_dir=out)


def test_the_tiny_models_tokenizer_round_trips_words(workspace):
    """transformers 5's AutoTokenizer loads our saved word-level tokenizer as Qwen2Tokenizer, which encodes
    almost every word as one token; load_tokenizer must keep the real vocabulary."""
    tokenizer = load_tokenizer(workspace["base"])
    words = list(dict.fromkeys(" ".join(phrase_vocabulary(CRITERIA)).split()))[:4]
    text = " ".join(words)
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert tokenizer.decode(ids) == text


def _changed_share(before: dict, after: dict) -> float:
    changed = total = 0
    for key, value in before.items():
        if value.is_floating_point() and key in after:
            changed += int((after[key].float() != value.float()).sum())
            total += value.numel()
    return changed / total


def test_a_full_bf16_fine_tune_keeps_fp32_master_weights_so_small_updates_land(workspace):
    """At lr 5e-7 an update is far below bf16's resolution: with weights stored in bf16 (the old behaviour)
    about 1% of them changed after 10 steps. fp32 master weights under bf16 autocast change nearly all."""
    from transformers import AutoModelForCausalLM

    options = {**FAST, "learning_rate": 5e-7, "batch_size": 4}
    spec = TrainingSpec(
        kind="sft",
        base_model=workspace["base"],
        criterion="empathy",
        max_steps=10,
        use_lora=False,
        precision="bf16",
        **options,
    )
    out = workspace["root"] / "bf16-full"
    result = run_training(spec, dataset_dir=workspace["pairs"], output_dir=out)
    assert result.status == "completed"
    before = AutoModelForCausalLM.from_pretrained(workspace["base"], local_files_only=True).state_dict()
    after_model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    assert after_model.dtype == torch.float32  # saved from fp32 master weights
    assert _changed_share(before, after_model.state_dict()) > 0.9
    assert json.loads((out / "training_config.json").read_text())["bf16"] is True


def test_each_batch_carries_the_margins_of_its_own_pairs(workspace, safety_reward_model, monkeypatch):
    """Through the real dataloader: every row of every batch reaches the loss with the margin computed for
    that pair (a shuffle of margins within a batch keeps the multiset, and must still fail here)."""
    from annotations.training.modpo import MARGIN_COLUMN, MODPOTrainer

    real_compute = MODPOTrainer._compute_loss
    real_loss = modpo_module.modpo_loss
    checked = []
    expected: dict[tuple[int, ...], float | None] = {}
    current: dict[str, torch.Tensor] = {}

    def row_key(ids: torch.Tensor, mask: torch.Tensor) -> tuple[int, ...]:
        return tuple(ids[mask.bool()].tolist())

    def spying_compute(self, model, inputs, return_outputs):
        if not expected:
            for example in self.train_dataset:
                single = self.data_collator([example])
                key = row_key(single["input_ids"][0], single["attention_mask"][0])
                # Two pairs with the same chosen tokens cannot be told apart: leave them out of the check.
                expected[key] = None if key in expected else float(example[MARGIN_COLUMN])
        # Training batches only: an evaluation pair may share its chosen tokens with a training pair.
        current["inputs"] = inputs if self.model.training else None
        return real_compute(self, model, inputs, return_outputs)

    def spying_loss(chosen, rejected, margins, **kwargs):
        inputs = current["inputs"]
        for row in range(len(margins) if inputs is not None else 0):
            key = row_key(inputs["input_ids"][row], inputs["attention_mask"][row])
            if expected.get(key) is not None:
                checked.append((expected[key], float(margins[row])))
        return real_loss(chosen, rejected, margins, **kwargs)

    monkeypatch.setattr(MODPOTrainer, "_compute_loss", spying_compute)
    monkeypatch.setattr(modpo_module, "modpo_loss", spying_loss)
    spec = modpo_spec(workspace, safety_reward_model.output_dir, max_steps=4)
    result = run_training(spec, dataset_dir=workspace["multi"], output_dir=workspace["root"] / "modpo-rows")
    assert result.status == "completed"
    assert len(checked) >= 8 and len({round(e, 6) for e, _ in checked}) > 1
    for want, got in checked:
        assert got == pytest.approx(want, abs=1e-6)


def test_dpo_is_scored_on_the_test_pairs_of_every_criterion_in_the_export(workspace):
    """Implicit-reward accuracy per criterion, on every criterion's held-out pairs (not only the trained one),
    computed pair by pair; on the trained criterion it agrees with TRL's own batch-averaged evaluation."""
    from annotations.training.data import preference_pairs

    spec = TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=4, **FAST)
    result = run_training(spec, dataset_dir=workspace["pairs"], output_dir=workspace["root"] / "dpo-heldout")
    for criterion in CRITERIA:
        count = len(preference_pairs(workspace["pairs"], criterion, "test"))
        assert result.metrics[f"heldout/{criterion}/n"] == count > 0
        assert 0.0 <= result.metrics[f"heldout/{criterion}/accuracy"] <= 1.0
    logged = [
        json.loads(line) for line in (workspace["root"] / "dpo-heldout" / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("heldout/safety/accuracy" in entry for entry in logged)  # reported, so it reaches the job's metrics


@pytest.mark.parametrize(
    "reference",
    [{}, {"use_lora": False}, {"use_lora": False, "precompute_ref_log_probs": True}],
    ids=["lora-adapter-disabled", "full-with-reference-model", "full-with-precomputed-reference"],
)
def test_implicit_reward_margins_are_those_trl_evaluates(workspace, tmp_path, reference):
    from annotations.training.data import preference_pairs
    from annotations.training.runner import _heldout_reference, implicit_reward_margins

    captured = {}
    spec = TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=2, **FAST, **reference)
    from annotations.training import runner

    real = runner.implicit_reward_heldout

    def capture(trainer, spec, pairs_by_criterion):
        captured["trainer"] = trainer
        return real(trainer, spec, pairs_by_criterion)

    runner.implicit_reward_heldout = capture
    try:
        result = run_training(spec, dataset_dir=workspace["pairs"], output_dir=tmp_path / "dpo")
    finally:
        runner.implicit_reward_heldout = real
    trainer = captured["trainer"]
    pairs = preference_pairs(workspace["pairs"], "empathy", "test")
    margins = implicit_reward_margins(trainer, _heldout_reference(trainer, spec), pairs, beta=spec.beta)
    batches = [margins[start : start + 8] for start in range(0, len(margins), 8)]
    batch_means = [sum(b) / len(b) for b in batches]
    batch_accuracies = [sum(1 for m in b if m > 0) / len(b) for b in batches]
    assert sum(batch_means) / len(batches) == pytest.approx(result.metrics["eval_rewards/margins"], abs=1e-4)
    assert sum(batch_accuracies) / len(batches) == pytest.approx(result.metrics["eval_rewards/accuracies"], abs=1e-6)
    assert result.metrics["heldout/empathy/accuracy"] == pytest.approx(sum(1 for m in margins if m > 0) / len(margins))


def test_modpo_is_scored_on_every_criterion_and_reward_and_sft_on_their_own(workspace, safety_reward_model):
    modpo = run_training(
        modpo_spec(workspace, safety_reward_model.output_dir, max_steps=2),
        dataset_dir=workspace["multi"],
        output_dir=workspace["root"] / "modpo-heldout",
    )
    assert {f"heldout/{c}/accuracy" for c in CRITERIA} <= set(modpo.metrics)
    reward = safety_reward_model.metrics
    assert reward["heldout/safety/accuracy"] == reward["eval_pairwise_accuracy"]
    assert reward["heldout/safety/n"] == reward["eval_pairs"] > 0
    spec = TrainingSpec(kind="sft", base_model=workspace["base"], criterion="empathy", max_steps=2, **FAST)
    sft = run_training(spec, dataset_dir=workspace["pairs"], output_dir=workspace["root"] / "sft-heldout")
    assert sft.metrics["heldout/empathy/loss"] == sft.metrics["eval_loss"]
    assert sft.metrics["heldout/empathy/n"] > 0


def reward_snapshot_with_varied_margins(root):
    """A reward-format snapshot whose pairs carry different strength margins (as on a 5- or 7-point scale)."""
    directory = write_snapshot(root, snapshot_format="reward", criteria=CRITERIA, train_count=24, test_count=8)
    path = directory / "data" / "safety" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for index, row in enumerate(rows):
        row["margin"] = (1, 2, 3, 4)[index % 4] / 4
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory, sorted(row["margin"] for row in rows)


@pytest.mark.parametrize("reward_margins", [True, False])
def test_reward_margins_reach_the_loss_only_when_asked(workspace, tmp_path, monkeypatch, reward_margins):
    from trl import RewardTrainer

    dataset, recorded = reward_snapshot_with_varied_margins(tmp_path / "data")
    seen = []
    real_compute = RewardTrainer.compute_loss

    def spying_compute(self, model, inputs, *args, **kwargs):
        if self.model.training:
            seen.extend(inputs["margin"].tolist())
        return real_compute(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(RewardTrainer, "compute_loss", spying_compute)
    options = {**FAST, "batch_size": 4}
    spec = TrainingSpec(
        kind="reward",
        base_model=workspace["base"],
        criterion="safety",
        num_epochs=1,
        reward_margins=reward_margins,
        **options,
    )
    result = run_training(spec, dataset_dir=dataset, output_dir=tmp_path / "rm")
    assert result.status == "completed"
    # One epoch: every pair reached the loss once, with its own strength margin, or with 0 when off.
    assert sorted(seen) == pytest.approx(recorded if reward_margins else [0.0] * len(recorded))
    config = json.loads((tmp_path / "rm" / "training_config.json").read_text())
    assert config["spec"]["reward_margins"] is reward_margins


def test_reward_margins_need_an_export_that_records_them(workspace):
    from annotations.training.spec import TrainingSpecError, validate_spec

    spec = TrainingSpec(kind="reward", base_model=workspace["base"], criterion="safety", reward_margins=True)
    with pytest.raises(TrainingSpecError, match="reward margins need"):
        validate_spec(spec, dataset_dir=workspace["pairs"])
    with pytest.raises(TrainingSpecError, match="only reward models"):
        validate_spec(TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="safety", reward_margins=True))


def test_a_run_started_before_the_reward_margins_option_still_resumes(workspace):
    out = workspace["root"] / "resume-before-option"
    spec = TrainingSpec(kind="dpo", base_model=workspace["base"], criterion="empathy", max_steps=2, **FAST)
    run_training(spec, dataset_dir=workspace["pairs"], output_dir=out, should_stop=lambda: True)
    config = json.loads((out / "training_config.json").read_text())
    del config["spec"]["reward_margins"]  # as written by the release before the option
    (out / "training_config.json").write_text(json.dumps(config))
    assert run_training(spec, dataset_dir=workspace["pairs"], output_dir=out).status == "completed"
