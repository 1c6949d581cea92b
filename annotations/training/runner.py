"""run_training: one entry point for every kind, called by the Celery task with plain arguments.

Output directory layout (also the Trainer's output_dir, so checkpoints land there):
    checkpoint-<step>/      while running; removed when the run completes
    training_config.json    the spec, resolved settings, library versions (written first)
    manifest.json           copy of the dataset snapshot's manifest
    metrics.jsonl           one line per log event, appended across resumed runs (a resumed run first drops the
                            lines after its checkpoint, which it trains and logs again)
    <model or adapter>, tokenizer files
    result.json             written last, only by a completed run: a rerun returns it untouched
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from annotations.training.data import preference_pairs
from annotations.training.spec import TrainingResult, TrainingSpec, heldout_key, read_manifest, validate_spec

ShouldStop = Callable[[], bool]
Report = Callable[[int, int, float, dict[str, float]], None]

RESULT_FILE = "result.json"
CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.jsonl"
MARGINS_FILE = "modpo_margins.jsonl"  # MODPO: the margin of every pair, as fed to the loss


def run_training(
    spec: TrainingSpec,
    *,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    should_stop: ShouldStop | None = None,
    report: Report | None = None,
) -> TrainingResult:
    """Train (or merge) as `spec` says; resume from the last checkpoint in `output_dir` if any.

    should_stop() is checked after every optimizer step: when it returns True the run saves a
    checkpoint and returns status "stopped". report(step, total_steps, epoch, metrics) is called
    at every log event (every `spec.logging_steps` steps, and with the final evaluation).
    Idempotent: a completed output_dir returns its stored result without training again.
    """
    validate_spec(spec, dataset_dir=dataset_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    finished = output_dir / RESULT_FILE
    if finished.is_file():
        return TrainingResult(**json.loads(finished.read_text(encoding="utf-8")))
    if is_main_process():
        # A multi-process run's supervisor has written both before starting the ranks (no rank races another).
        prepare_output_dir(spec, dataset_dir, output_dir)

    if spec.kind == "merge":
        return _run_merge(spec, Path(dataset_dir) if dataset_dir is not None else None, output_dir)
    assert dataset_dir is not None  # validate_spec guarantees a dataset for training kinds
    dataset_dir = Path(dataset_dir)
    runners = {
        "reward": _build_reward_trainer,
        "dpo": _build_dpo_trainer,
        "modpo": _build_dpo_trainer,
        "sft": _build_sft_trainer,
    }
    return _train(spec, dataset_dir, output_dir, runners[spec.kind], should_stop, report)


def prepare_output_dir(spec: TrainingSpec, dataset_dir: str | Path | None, output_dir: Path) -> None:
    """training_config.json (refusing another spec's directory) and the snapshot's manifest, before training (a merge's
    snapshot is the one its merged policy is scored on)."""
    _write_config(spec, output_dir, dataset_dir)
    if dataset_dir is not None:
        shutil.copyfile(Path(dataset_dir) / "manifest.json", output_dir / "manifest.json")


def process_rank() -> int:
    """This process's global rank: RANK, set by torchrun / accelerate launch for every process; 0 alone."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """Rank 0 writes the shared files (config, metrics, result, model card) and is the only one that reports."""
    return process_rank() == 0


# ---- control hooks ------------------------------------------------------------------------------


def _control_callback(should_stop: ShouldStop | None, report: Report | None, metrics_path: Path) -> Any:
    from transformers import TrainerCallback

    class ControlCallback(TrainerCallback):
        """Stops at the next step when asked (saving a checkpoint), reports and records metrics.

        With several processes only rank 0 asks should_stop() and reports; its answer is broadcast to every rank
        at each step boundary, so all ranks stop after the same step and save one consistent checkpoint."""

        stopped = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            stop = bool(should_stop is not None and state.is_world_process_zero and should_stop())
            if args.world_size > 1:
                stop = _agree_from_rank_zero(stop, args.device)
            if stop:
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
            if not state.is_world_process_zero:
                return  # the logged figures are already reduced over the ranks; one writer
            numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            with metrics_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **numbers}) + "\n")
            if report is not None:
                report(state.global_step, state.max_steps, float(state.epoch or 0.0), numbers)

    return ControlCallback()


def _agree_from_rank_zero(flag: bool, device: Any) -> bool:
    """Rank 0's flag on every rank (a collective: every rank calls it at the same step boundary)."""
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([int(flag)], device=device), from_process=0).item())


# ---- shared training loop -----------------------------------------------------------------------


def _train(
    spec: TrainingSpec,
    dataset_dir: Path,
    output_dir: Path,
    build_trainer: Callable[..., Any],
    should_stop: ShouldStop | None,
    report: Report | None,
) -> TrainingResult:
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(spec.seed)
    train_pairs = preference_pairs(dataset_dir, spec.criterion, "train")
    heldout_pairs = heldout_pairs_by_criterion(dataset_dir)
    test_pairs = heldout_pairs.get(spec.criterion) or []
    if not train_pairs:
        raise ValueError(f"no training pairs for criterion {spec.criterion!r} in {dataset_dir}")
    control = _control_callback(should_stop, report, output_dir / METRICS_FILE)
    trainer, evaluate = build_trainer(spec, train_pairs, test_pairs, output_dir, control)

    last_checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    resumed_from_step = _checkpoint_step(last_checkpoint)
    if is_main_process():
        metrics_truncate(output_dir / METRICS_FILE, after_step=resumed_from_step or 0)
    trainer.train(resume_from_checkpoint=last_checkpoint)
    state = trainer.state
    if control.stopped:
        return TrainingResult("stopped", str(output_dir), state.global_step, state.max_steps, resumed_from_step, {})

    trainer.save_model(str(output_dir))  # every rank calls it (FSDP gathers the shards); rank 0 writes
    # Also logged, so reported and recorded. DPO and MODPO are scored on every criterion's test pairs; with
    # several processes each scores its share of the pairs and the figures are gathered, every pair counted once.
    metrics = evaluate(trainer, heldout_pairs) if any(heldout_pairs.values()) else {}
    result = TrainingResult(
        "completed", str(output_dir), state.global_step, state.max_steps, resumed_from_step, metrics
    )
    trainer.accelerator.wait_for_everyone()
    if is_main_process():
        for checkpoint in output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
        (output_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        # TRL's own card names the base model only when it came from the Hub ("fine-tuned version of None").
        (output_dir / "README.md").write_text(model_card(spec, dataset_dir, result), encoding="utf-8")
    return result


def model_card(spec: TrainingSpec, dataset_dir: Path | None, result: TrainingResult) -> str:
    """The artifact's README: what was trained, from which base model and data, and how it did on held-out pairs."""
    manifest = read_manifest(dataset_dir) if dataset_dir is not None else {}
    lines = [
        f"# {spec.kind.upper()} model" + (f" ({spec.criterion})" if spec.criterion else ""),
        "",
        f"- base model: `{spec.base_model}`",
        f"- kind: {spec.kind}" + (f"; criterion: {spec.criterion}" if spec.criterion else ""),
    ]
    if spec.weights:
        lines.append("- weights: " + ", ".join(f"{key}={value}" for key, value in sorted(spec.weights.items())))
    if spec.merge_sources:
        lines.append(
            "- merged from: "
            + ", ".join(f"`{source}` ({weight:g})" for source, weight in zip(spec.merge_sources, spec.merge_weights))
        )
    if spec.reward_models:
        lines.append("- reward models: " + ", ".join(f"{k}: `{v}`" for k, v in sorted(spec.reward_models.items())))
    if manifest:
        study = manifest.get("study") or {}
        lines.append(
            f"- data: {manifest.get('format')} export of study {study.get('title') or study.get('slug') or '?'}"
            f" (rubric {manifest.get('rubric_versions') or manifest.get('criteria')})"
        )
    lines += [
        f"- adapter: {'LoRA' if spec.use_lora else 'none (full fine-tune)'}; precision: {spec.precision}",
        f"- steps: {result.global_step}; learning rate {spec.learning_rate}; batch size {spec.batch_size}; seed {spec.seed}",
    ]
    if spec.num_processes > 1:
        global_batch = spec.batch_size * spec.num_processes * spec.gradient_accumulation_steps
        lines.append(
            f"- processes: {spec.num_processes} on {spec.num_machines} machine(s), {spec.distributed}; "
            f"global batch {global_batch}"
        )
    lines += [
        "",
        "## Held-out figures",
        "",
    ]
    if result.metrics:
        lines += [f"- {key}: {value:.4g}" for key, value in sorted(result.metrics.items())]
    else:
        lines.append("No test split in the data: nothing held out.")
    return "\n".join(lines) + "\n"


def metrics_truncate(path: Path, *, after_step: int) -> int:
    """Drop the lines of a metrics file logged after `after_step` (a dead run's steps past its last checkpoint,
    which the resumed run logs again), so the file never holds a step twice. Returns how many were dropped.
    Written to a temporary file and renamed, so a death midway leaves the old file whole."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step") or 0
        except (ValueError, AttributeError):
            dropped += 1  # a line cut short by the death
            continue
        if step > after_step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        partial = path.with_suffix(".jsonl.partial")
        partial.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        partial.replace(path)
    return dropped


def _checkpoint_step(checkpoint: str | None) -> int | None:
    if checkpoint is None:
        return None
    return int(Path(checkpoint).name.split("-")[-1])


def use_bf16(spec: TrainingSpec) -> bool:
    """bf16 mixed precision: "auto" on a GPU that has it; "bf16" also on the CPU (torch autocasts there)."""
    if spec.precision == "fp32":
        return False
    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if spec.precision == "bf16":
        if torch.cuda.is_available() and not gpu_bf16:
            raise ValueError("precision 'bf16' asked for, but this GPU does not support bf16")
        return True
    return gpu_bf16


def _common_args(spec: TrainingSpec, output_dir: Path) -> dict[str, Any]:
    bf16 = use_bf16(spec)
    return {
        "output_dir": str(output_dir),
        "seed": spec.seed,
        "data_seed": spec.seed,
        "learning_rate": spec.learning_rate,
        "num_train_epochs": spec.num_epochs,
        "max_steps": spec.max_steps,
        "per_device_train_batch_size": spec.batch_size,
        "per_device_eval_batch_size": spec.batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "gradient_checkpointing": spec.gradient_checkpointing,
        **_distributed_args(spec),
        "bf16": bf16,
        "fp16": False,
        # Without a GPU, say so: TrainingArguments refuses bf16 autocast on the CPU unless told it is one.
        "use_cpu": not torch.cuda.is_available(),
        "logging_steps": spec.logging_steps,
        "save_strategy": "steps",
        "save_steps": spec.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "max_length": spec.max_length,
    }


def _distributed_args(spec: TrainingSpec) -> dict[str, Any]:
    """TrainingArguments for a run launched as several processes (accelerate launch sets RANK, WORLD_SIZE...):
    gloo on the CPU, NCCL on GPUs; FSDP through TrainingArguments' own fsdp options."""
    if spec.num_processes <= 1:
        return {}
    args: dict[str, Any] = {"ddp_backend": "nccl" if torch.cuda.is_available() else "gloo"}
    if spec.distributed == "fsdp":
        args["fsdp"] = True
        args["fsdp_config"] = {
            "version": 2,
            "reshard_after_forward": True,  # full shard: weights, gradients and optimizer state
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
            # Full state dicts on save: the final model is one ordinary checkpoint, and resume reads the same.
            "state_dict_type": "FULL_STATE_DICT",
            "cpu_ram_efficient_loading": True,
            "sync_module_states": True,
            "use_orig_params": True,
            # FSDP's own activation checkpointing; the trainer's would add an all-gather in the backward pass.
            "activation_checkpointing": spec.gradient_checkpointing,
        }
        args["gradient_checkpointing"] = False
    else:
        args["ddp_find_unused_parameters"] = False
    return args


def _model_dtype(spec: TrainingSpec) -> Any:
    """The dtype the trained model's weights are loaded in.

    A full fine-tune keeps fp32 master weights and trains under bf16 autocast (TrainingArguments' bf16):
    with weights stored in bf16, updates at the usual DPO learning rates (5e-7 to 5e-6) are smaller than
    bf16's resolution and round away. LoRA trains fp32 adapters (PEFT keeps them in fp32) on a frozen base,
    which may then sit in bf16 to halve its memory.
    """
    return torch.bfloat16 if use_bf16(spec) and spec.use_lora else torch.float32


def _lora_config(spec: TrainingSpec, task_type: str) -> Any:
    if not spec.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type=task_type,
    )


def _dataset(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{key: row[key] for key in columns if key in row} for row in rows])


# ---- kinds --------------------------------------------------------------------------------------


def _build_reward_trainer(spec, train_pairs, test_pairs, output_dir, control):
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from annotations.training.models import load_tokenizer, pairwise_accuracy, score_pairs

    tokenizer = load_tokenizer(spec.base_model)
    model = AutoModelForSequenceClassification.from_pretrained(
        spec.base_model, num_labels=1, dtype=_model_dtype(spec), local_files_only=True
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    columns = ("prompt", "chosen", "rejected", "margin")
    args = RewardConfig(**_common_args(spec, output_dir))
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(reward_training_rows(spec, train_pairs), columns),
        processing_class=tokenizer,
        callbacks=[control],
        peft_config=_lora_config(spec, "SEQ_CLS"),
    )

    def evaluate(trainer: Any, heldout_pairs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
        if not test_pairs:
            return {}
        model = trainer.model
        model.eval()
        chosen, rejected = _sharded(
            trainer.accelerator,
            test_pairs,
            lambda share: score_pairs(
                model, tokenizer, share, max_length=spec.max_length, batch_size=spec.batch_size * 2
            ),
        )
        margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
        accuracy = pairwise_accuracy(chosen, rejected)
        metrics = {
            "eval_pairwise_accuracy": accuracy,
            "eval_mean_margin": sum(margins) / len(margins),
            "eval_pairs": float(len(margins)),
            heldout_key(spec.criterion, "accuracy"): accuracy,
            heldout_key(spec.criterion, "n"): float(len(margins)),
        }
        trainer.log(dict(metrics))
        return metrics

    return trainer, evaluate


def _sharded(
    accelerator: Any, items: list[Any], score: Callable[[list[Any]], tuple[list[float], list[float]]]
) -> tuple[list[float], list[float]]:
    """score(items) computed by all processes together: each scores one contiguous, equally long share (the last
    padded with repeats of the last item, so every rank runs as many forward passes: FSDP needs that), the shares
    are gathered in rank order and the padding cut off, so every item is scored exactly once, in order."""
    world = accelerator.num_processes
    if world == 1:
        return score(items)
    from accelerate.utils import gather_object

    per_rank = -(-len(items) // world)
    padded = items + [items[-1]] * (per_rank * world - len(items))
    first, second = score(padded[accelerator.process_index * per_rank : (accelerator.process_index + 1) * per_rank])
    return gather_object(list(first))[: len(items)], gather_object(list(second))[: len(items)]


def reward_training_rows(spec: TrainingSpec, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reward trainer's rows: TRL subtracts the "margin" column inside the Bradley-Terry loss, so a pair
    with a strong preference must be won by more. With spec.reward_margins off every margin is 0 (plain
    Bradley-Terry), so whether margins were used is the job's recorded choice, not the export format's."""
    if spec.reward_margins:
        missing = [pair["comparison_id"] for pair in pairs if pair.get("margin") is None]
        if missing:
            raise ValueError(f"reward margins asked for, but {len(missing)} pairs have none (first: {missing[0]})")
        return [{**pair, "margin": float(pair["margin"])} for pair in pairs]
    return [{**pair, "margin": 0.0} for pair in pairs]


def _build_dpo_trainer(spec, train_pairs, test_pairs, output_dir, control):
    """DPO, or MODPO when spec.kind == "modpo" (margins computed first, stored with the pairs)."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from annotations.training.models import load_tokenizer

    tokenizer = load_tokenizer(spec.base_model)
    columns: tuple[str, ...] = ("prompt", "chosen", "rejected")
    trainer_class: Any = DPOTrainer
    extra: dict[str, Any] = {}
    if spec.kind == "modpo":
        from annotations.training.modpo import MARGIN_COLUMN, DataCollatorForMODPO, MODPOTrainer

        train_pairs = with_modpo_margins(spec, train_pairs)
        test_pairs = with_modpo_margins(spec, test_pairs)
        if is_main_process():
            _record_margins(output_dir / MARGINS_FILE, {"train": train_pairs, "test": test_pairs})
        columns = (*columns, MARGIN_COLUMN)
        trainer_class = MODPOTrainer
        extra = {
            "primary_weight": spec.weights[spec.criterion],
            "data_collator": DataCollatorForMODPO(pad_token_id=tokenizer.pad_token_id, max_length=spec.max_length),
        }
    model = AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=_model_dtype(spec), local_files_only=True)
    args = DPOConfig(
        **_common_args(spec, output_dir),
        beta=spec.beta,
        precompute_ref_log_probs=spec.precompute_ref_log_probs,
    )
    test_dataset = _dataset(test_pairs, columns) if test_pairs else None
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=_dataset(train_pairs, columns),
        eval_dataset=test_dataset,
        processing_class=tokenizer,
        callbacks=[control],
        peft_config=_lora_config(spec, "CAUSAL_LM"),
        **extra,
    )

    def evaluate(trainer: Any, heldout_pairs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
        metrics = _numbers(trainer.evaluate()) if test_pairs else {}
        heldout = implicit_reward_heldout(trainer, spec, heldout_pairs)
        trainer.log(dict(heldout))
        return {**metrics, **heldout}

    return trainer, evaluate


def _build_sft_trainer(spec, train_pairs, test_pairs, output_dir, control):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from annotations.training.models import load_tokenizer

    tokenizer = load_tokenizer(spec.base_model)
    model = AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=_model_dtype(spec), local_files_only=True)

    def prompt_completion(pairs: list[dict[str, Any]]) -> Any:
        from datasets import Dataset

        return Dataset.from_list([{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs])

    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**_common_args(spec, output_dir)),
        train_dataset=prompt_completion(train_pairs),
        eval_dataset=prompt_completion(test_pairs) if test_pairs else None,
        processing_class=tokenizer,
        callbacks=[control],
        peft_config=_lora_config(spec, "CAUSAL_LM"),
    )

    def evaluate(trainer: Any, heldout_pairs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
        if not test_pairs:
            return {}
        metrics = _numbers(trainer.evaluate())
        if "eval_loss" in metrics:
            metrics[heldout_key(spec.criterion, "loss")] = metrics["eval_loss"]
            metrics[heldout_key(spec.criterion, "n")] = float(len(test_pairs))
        return metrics

    return trainer, evaluate


# ---- held-out evaluation ------------------------------------------------------------------------


def heldout_pairs_by_criterion(dataset_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The test pairs of every criterion in the snapshot (clinicians' held-out judgments), by criterion."""
    manifest = read_manifest(dataset_dir)
    if "test" not in (manifest.get("splits") or []):
        return {}
    return {criterion: preference_pairs(dataset_dir, criterion, "test") for criterion in manifest.get("criteria") or []}


def implicit_reward_heldout(
    trainer: Any, spec: TrainingSpec, pairs_by_criterion: dict[str, list[dict[str, Any]]]
) -> dict[str, float]:
    """Per criterion, the share of test pairs whose implicit reward beta * (logratio(chosen) - logratio(rejected))
    is positive, their number and the mean reward margin. Every criterion of the export, not only the trained one:
    a policy trained on empathy alone may lose safety, and this is where that shows."""
    reference = _heldout_reference(trainer, spec)
    metrics: dict[str, float] = {}
    for criterion, pairs in sorted(pairs_by_criterion.items()):
        if not pairs:
            continue
        margins = implicit_reward_margins(trainer, reference, pairs, beta=spec.beta)
        metrics[heldout_key(criterion, "accuracy")] = sum(1 for m in margins if m > 0) / len(margins)
        metrics[heldout_key(criterion, "margin")] = sum(margins) / len(margins)
        metrics[heldout_key(criterion, "n")] = float(len(margins))
    return metrics


def _heldout_reference(trainer: Any, spec: TrainingSpec) -> Any:
    """The reference model for the implicit reward. LoRA: the policy with its
    adapter disabled (compute_ref_log_probs does that when given the policy). A full fine-tune keeps a reference
    model unless its reference log-probs were precomputed; then the base model is loaded again."""
    from peft import PeftModel

    if trainer.ref_model is not None:
        return trainer.ref_model
    if isinstance(trainer.accelerator.unwrap_model(trainer.model), PeftModel):
        return trainer.model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    reference = AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=_model_dtype(spec), local_files_only=True)
    reference.to(trainer.accelerator.device).eval()
    add_fused_lm_head(reference)
    return reference


@torch.no_grad()
def implicit_reward_margins(trainer: Any, reference: Any, pairs: list[dict[str, Any]], *, beta: float) -> list[float]:
    """beta * ((logp(chosen) - logp_ref(chosen)) - (logp(rejected) - logp_ref(rejected))) of each pair, in order:
    tokenized and collated by the trainer itself (so exactly as in training), batched, without gradients."""
    from datasets import Dataset

    from annotations.training.modpo import MARGIN_COLUMN, MODPOTrainer

    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    if isinstance(trainer, MODPOTrainer):
        rows = [{**row, MARGIN_COLUMN: 0.0} for row in rows]  # its collator needs the column; unused here
    dataset = trainer._prepare_dataset(Dataset.from_list(rows), trainer.processing_class, trainer.args, "heldout")
    model = trainer.model
    model.eval()
    skipped = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", MARGIN_COLUMN}
    margins: list[float] = []
    # Sequential, and sharded across processes by the accelerator: gather_for_metrics puts the shares together
    # and drops the pairs repeated to even out the last batch, so every test pair counts exactly once.
    for batch in trainer.get_eval_dataloader(dataset):
        inputs = trainer._prepare_inputs(batch)
        model_kwargs = {key: value for key, value in inputs.items() if key not in skipped}
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        seq_len = inputs["completion_mask"].size(1) - 1
        with trainer.accelerator.autocast():
            logps = model(**model_kwargs, use_cache=False, labels=labels, fused_lm_head=True).log_probs
        chosen_logps, rejected_logps = logps[:, -seq_len:].float().sum(dim=1).chunk(2, dim=0)
        ref_chosen, ref_rejected = trainer.compute_ref_log_probs(reference, inputs)
        rewards = beta * ((chosen_logps - ref_chosen.float()) - (rejected_logps - ref_rejected.float()))
        margins.extend(trainer.accelerator.gather_for_metrics(rewards.float()).cpu().tolist())
    return margins


def with_modpo_margins(spec: TrainingSpec, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs with their MODPO margin sum_{j != k} w_j (r_j(x, y_w) - r_j(x, y_l)), computed once
    with the reward models of the other weighted criteria (batched, no gradients)."""
    from annotations.training.models import load_reward_model, load_tokenizer, score_pairs
    from annotations.training.modpo import MARGIN_COLUMN

    margins = [0.0] * len(pairs)
    # Every process scores all pairs on its own GPU (LOCAL_RANK), so each holds the full margin column.
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}" if torch.cuda.is_available() else "cpu"
    for criterion, weight in sorted(spec.weights.items()):
        if criterion == spec.criterion or weight == 0 or not pairs:
            continue
        directory = spec.reward_models[criterion]
        model = load_reward_model(directory, dtype=_model_dtype(spec)).to(device)
        chosen, rejected = score_pairs(
            model, load_tokenizer(directory), pairs, max_length=spec.max_length, batch_size=spec.batch_size * 4
        )
        del model
        for index, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
            margins[index] += weight * (c - r)
    return [{**pair, MARGIN_COLUMN: margin} for pair, margin in zip(pairs, margins, strict=True)]


def _record_margins(path: Path, pairs_by_split: dict[str, list[dict[str, Any]]]) -> None:
    from annotations.training.modpo import MARGIN_COLUMN

    with path.open("w", encoding="utf-8") as out:
        for split, pairs in pairs_by_split.items():
            for pair in pairs:
                record = {"split": split, "comparison_id": pair["comparison_id"], "margin": pair[MARGIN_COLUMN]}
                out.write(json.dumps(record) + "\n")


def _run_merge(spec: TrainingSpec, dataset_dir: Path | None, output_dir: Path) -> TrainingResult:
    """Average the sources, save the merged policy, and score it on the snapshot's test pairs like a DPO policy."""
    from annotations.training.models import load_tokenizer, merge_models

    merged = merge_models(spec.merge_sources, spec.merge_weights, base_model=spec.base_model)
    merged.save_pretrained(str(output_dir))
    load_tokenizer(spec.base_model).save_pretrained(str(output_dir))
    metrics = merge_heldout(spec, merged, dataset_dir, output_dir) if dataset_dir is not None else {}
    result = TrainingResult("completed", str(output_dir), 0, 0, None, metrics)
    (output_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    (output_dir / "README.md").write_text(model_card(spec, dataset_dir, result), encoding="utf-8")
    return result


def merge_heldout(spec: TrainingSpec, merged: Any, dataset_dir: Path, output_dir: Path) -> dict[str, float]:
    """A merged policy's held-out figures, the same as a DPO or MODPO policy's (implicit_reward_heldout, same keys):
    per criterion, the implicit reward's accuracy on the snapshot's test pairs, against the base model as reference.
    The trainer only tokenizes and collates (as in training); nothing is trained."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from annotations.training.models import load_tokenizer

    heldout = heldout_pairs_by_criterion(dataset_dir)
    any_pairs = next((pairs for pairs in heldout.values() if pairs), None)
    if any_pairs is None:
        return {}
    reference = AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=merged.dtype, local_files_only=True)
    trainer = DPOTrainer(
        model=merged,
        ref_model=reference,
        args=DPOConfig(**_common_args(spec, output_dir), beta=spec.beta),
        train_dataset=_dataset(any_pairs[:1], ("prompt", "chosen", "rejected")),  # required; never trained on
        processing_class=load_tokenizer(spec.base_model),
    )
    return implicit_reward_heldout(trainer, spec, heldout)


# ---- records ------------------------------------------------------------------------------------


def _write_config(spec: TrainingSpec, output_dir: Path, dataset_dir: str | Path | None) -> None:
    """Record what the run is; refuse to resume a run whose output_dir holds another spec."""
    import peft
    import transformers
    import trl

    config_path = output_dir / CONFIG_FILE
    if config_path.is_file():
        previous = json.loads(config_path.read_text(encoding="utf-8")).get("spec") or {}
        # An option added after the run started (reward_margins) takes its default, so the run still resumes.
        defaults = {f.name: f.default for f in dataclasses.fields(TrainingSpec) if f.default is not dataclasses.MISSING}
        if {**defaults, **previous} != spec.to_dict():
            raise ValueError(f"{output_dir} holds a run of another spec; use a fresh output directory")
        return
    config = {
        "spec": spec.to_dict(),
        "dataset_dir": str(dataset_dir) if dataset_dir is not None else None,
        "dataset_manifest": read_manifest(Path(dataset_dir)) if dataset_dir is not None else None,
        "bf16": use_bf16(spec),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "peft": peft.__version__,
        },
    }
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
