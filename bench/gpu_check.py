"""DPO vs MODPO step cost on a ~0.5B model built from a config (no download), and two correctness checks of the
training path itself.

Prints tokens per second, peak memory, MFU and the MODPO / DPO step-time ratio, measured in the
same run. Targets: MODPO / DPO <= 1.1; MFU >= 35% on an H100 or H200. Then:
- full fine-tune mixed precision: run_training (full DPO, precision bf16, lr 5e-7) must change nearly all weights
  (> 90%), which it does only with fp32 master weights under bf16 autocast;
- DDP: with 2 or more GPUs, the same DPO job as 2 processes (accelerate launch, through run_training_launched) and as
  one process with the same global batch must reach the same loss; skipped, saying so, with fewer GPUs.
`--tiny` runs a tiny model on CPU in seconds (the smoke test in make test). Run through bench/gpu_check.sh, which
picks the interpreter.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch  # imported before the repository's .venv joins sys.path (see gpu_check.sh)

EXTRA_SITE = os.environ.get("GPU_CHECK_EXTRA_SITE")
if EXTRA_SITE:
    # This interpreter's CUDA torch is already imported, so .venv's CPU torch can no longer shadow it.
    # Same Python version: .venv's pinned transformers/trl/peft win (prepend). Another version: its
    # compiled packages would not load, so .venv only fills in what this interpreter lacks (append).
    if os.environ.get("GPU_CHECK_SITE_MODE") == "prepend":
        sys.path.insert(0, EXTRA_SITE)
    else:
        sys.path.append(EXTRA_SITE)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODPO_TARGET_RATIO = 1.1
MFU_TARGET = 0.35
CHANGED_SHARE_TARGET = 0.9  # full fine-tune at lr 5e-7 in bf16 autocast: share of weights that moved
DDP_LOSS_TOLERANCE = 1e-3  # 2 processes vs 1 with the same global batch: final losses this close (absolute)
CHECK_CRITERIA = ["empathy", "safety", "active_listening"]


def peak_bf16_flops(device_name: str) -> float | None:
    """Dense bf16 peak of known GPUs (no sparsity)."""
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        return 756e12
    if "H100" in name or "H200" in name or "H800" in name:
        return 989e12
    if "A100" in name:
        return 312e12
    return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny model, CPU smoke test")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before timing")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    parser.add_argument("--prompt-words", type=int, default=None)
    parser.add_argument("--response-words", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the device's bf16 peak")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--skip-checks", action="store_true", help="timings only: no mixed-precision or DDP check")
    parser.add_argument(
        "--ddp-on-cpu", action="store_true", help="run the DDP check on CPU processes (gloo) when there are no GPUs"
    )
    args = parser.parse_args()
    defaults = (
        {"steps": 3, "warmup": 1, "batch_size": 2, "prompt_words": 8, "response_words": 8}
        if args.tiny
        else {"steps": 20, "warmup": 3, "batch_size": 8, "prompt_words": 256, "response_words": 760}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def model_config(tiny: bool, vocab_size: int, tokenizer):
    from annotations.training.tiny import tiny_model_config

    if tiny:
        return tiny_model_config(
            vocab_size, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, max_positions=256
        )
    from transformers import Qwen2Config

    return Qwen2Config(  # about 0.47B parameters with a 32k vocabulary (tied embeddings)
        vocab_size=vocab_size,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_sliding_window=False,
    )


def synthetic_rows(count: int, words: list[str], prompt_words: int, response_words: int, seed: int):
    rng = random.Random(seed)

    def text(length: int) -> str:
        return " ".join(rng.choice(words) for _ in range(length))

    return [
        {
            "prompt": [{"role": "user", "content": text(prompt_words)}],
            "chosen": [{"role": "assistant", "content": text(response_words)}],
            "rejected": [{"role": "assistant", "content": text(response_words)}],
            "modpo_margin": rng.uniform(-1.0, 1.0),
        }
        for _ in range(count)
    ]


def main() -> int:
    args = parse_args()
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from annotations.training.modpo import MARGIN_COLUMN, DataCollatorForMODPO, MODPOTrainer
    from annotations.training.tiny import build_tiny_tokenizer

    disable_progress_bars()
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("no CUDA device: run with --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    if not cuda:
        torch.set_num_threads(1)
    bf16 = cuda and torch.cuda.is_bf16_supported()
    device_name = torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})"
    import transformers
    import trl

    print(
        f"device: {device_name}; torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    )

    vocab_words = [f"w{i}" for i in range(200 if args.tiny else 32000)]
    tokenizer = build_tiny_tokenizer(vocab_words, vocab_size=len(vocab_words) + 16)
    config = model_config(args.tiny, len(tokenizer), tokenizer)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if bf16 else torch.float32)
    parameter_count = sum(p.numel() for p in base.parameters())
    print(
        f"model: {parameter_count:,} parameters, {config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, {'bf16' if bf16 else 'fp32'}, full fine-tuning, reference model in memory"
    )

    total_steps = args.warmup + args.steps
    rows = synthetic_rows(total_steps * args.batch_size, vocab_words, args.prompt_words, args.response_words, 0)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.started = 0.0

        def on_step_begin(self, *_, **__):
            if cuda:
                torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            if cuda:
                torch.cuda.synchronize()
            self.durations.append(time.perf_counter() - self.started)

    def measure(trainer_class, output_dir: str, **extra) -> dict[str, float]:
        policy = copy.deepcopy(base)
        reference = copy.deepcopy(base)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        timer = StepTimer()
        dpo_args = DPOConfig(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            max_steps=total_steps,
            learning_rate=1e-6,
            bf16=bf16,
            gradient_checkpointing=False,
            max_length=None,
            beta=0.1,
            logging_steps=10**6,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
            use_cpu=not cuda,
        )
        trainer = trainer_class(
            model=policy,
            ref_model=reference,
            args=dpo_args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[timer],
            **extra,
        )
        tokens_per_step = int(
            trainer.data_collator(trainer.train_dataset.select(range(args.batch_size)).to_list())[
                "attention_mask"
            ].sum()
        )
        sequence_length = tokens_per_step / (2 * args.batch_size)
        trainer.train()
        step_time = statistics.median(timer.durations[args.warmup :])
        # Policy forward + backward (6N) and reference forward (2N) per token, plus attention
        # scores (causal, so half of 12 * layers * hidden * length forward+backward, 4 for the reference).
        attention = (12 + 4) / 2 * config.num_hidden_layers * config.hidden_size * sequence_length
        flops_per_step = tokens_per_step * (8 * parameter_count + attention)
        peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_bf16_flops(device_name) if bf16 else None)
        del trainer, policy, reference
        return {
            "step_time_s": step_time,
            "tokens_per_s": tokens_per_step / step_time,
            "tokens_per_step": tokens_per_step,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "mfu": flops_per_step / step_time / peak if peak else float("nan"),
        }

    with tempfile.TemporaryDirectory() as scratch:
        results = {
            "dpo": measure(DPOTrainer, f"{scratch}/dpo", **{}),
            "modpo": measure(
                MODPOTrainer,
                f"{scratch}/modpo",
                primary_weight=0.6,
                data_collator=DataCollatorForMODPO(pad_token_id=tokenizer.pad_token_id),
            ),
        }
    assert MARGIN_COLUMN in rows[0]
    for name, result in results.items():
        print(
            f"{name}: step {result['step_time_s'] * 1000:.1f} ms (median of {args.steps}), "
            f"{result['tokens_per_s']:.0f} tokens/s ({result['tokens_per_step']} tokens/step), "
            f"peak GPU memory {format_gib(result['peak_mem_gib'])}, MFU {format_share(result['mfu'])}"
        )
    ratio = results["modpo"]["step_time_s"] / results["dpo"]["step_time_s"]
    ratio_ok = ratio <= MODPO_TARGET_RATIO
    print(f"MODPO/DPO step-time ratio: {ratio:.3f} (target <= {MODPO_TARGET_RATIO}): {'PASS' if ratio_ok else 'FAIL'}")
    mfu = results["dpo"]["mfu"]
    mfu_ok = None if mfu != mfu else mfu >= MFU_TARGET  # NaN: no known peak (CPU or unknown GPU)
    verdict = "n/a (no known bf16 peak)" if mfu_ok is None else ("PASS" if mfu_ok else "FAIL")
    print(f"MFU (DPO): {format_share(mfu)} (target >= {MFU_TARGET:.0%} on H100/H200): {verdict}")
    checks_ok = True
    if not args.skip_checks:
        with tempfile.TemporaryDirectory() as scratch:
            checks_ok = run_checks(Path(scratch), args, cuda=cuda, bf16=bf16)
    if args.strict and (not ratio_ok or mfu_ok is False or not checks_ok):
        return 1
    return 0


# ---- checks of the training path (run_training, accelerate launch) --------------------------------------------


def check_workspace(root: Path, tiny: bool) -> tuple[str, str]:
    """A base model and a snapshot for the checks: the tiny test model on CPU, a wider one (about 20M parameters)
    on a GPU, so a step is real GPU work yet the check takes seconds."""
    from annotations.training.synthetic import phrase_vocabulary, write_snapshot
    from annotations.training.tiny import build_tiny_model

    size = {} if tiny else {"hidden_size": 512, "num_layers": 8}
    base = build_tiny_model(root / "base", phrase_vocabulary(CHECK_CRITERIA), **size)
    snapshot = write_snapshot(root / "snapshot", criteria=CHECK_CRITERIA, train_count=64, test_count=16)
    return str(base), str(snapshot)


def changed_share(before: dict, after: dict) -> float:
    changed = total = 0
    for key, value in before.items():
        if value.is_floating_point() and key in after:
            changed += int((after[key].float().cpu() != value.float().cpu()).sum())
            total += value.numel()
    return changed / total if total else 0.0


def check_mixed_precision(root: Path, base: str, snapshot: str) -> bool:
    """Full DPO fine-tune, precision bf16, lr 5e-7, 10 steps, through run_training: the share of weights changed."""
    from transformers import AutoModelForCausalLM

    from annotations.training import TrainingSpec, run_training

    spec = TrainingSpec(
        kind="dpo",
        base_model=base,
        criterion="empathy",
        use_lora=False,
        precision="bf16",
        learning_rate=5e-7,
        max_steps=10,
        batch_size=4,
        max_length=128,
        logging_steps=10,
        save_steps=10**6,
    )
    started = time.perf_counter()
    run_training(spec, dataset_dir=snapshot, output_dir=root / "mixed-precision")
    seconds = time.perf_counter() - started
    before = AutoModelForCausalLM.from_pretrained(base, local_files_only=True).state_dict()
    after = AutoModelForCausalLM.from_pretrained(str(root / "mixed-precision"), local_files_only=True)
    share = changed_share(before, after.state_dict())
    ok = share > CHANGED_SHARE_TARGET and after.dtype == torch.float32
    print(
        f"full fine-tune mixed precision: {share:.1%} of weights changed after 10 steps at lr 5e-7 in bf16 autocast, "
        f"saved as {str(after.dtype).replace('torch.', '')} ({seconds:.1f} s; target > {CHANGED_SHARE_TARGET:.0%}, "
        f"fp32 master weights): {'PASS' if ok else 'FAIL'}"
    )
    return ok


def child_python_path(root: Path) -> str:
    """PYTHONPATH for the processes accelerate launch starts: the repository, and when this interpreter is the system
    python3 with .venv's packages added (gpu_check.sh), a sitecustomize doing the same in every child: torch first
    from here, then .venv's site-packages where this script put them."""
    entries = [str(Path(__file__).resolve().parents[1])]
    if EXTRA_SITE:
        custom = root / "child-site"
        custom.mkdir(exist_ok=True)
        where = (
            "sys.path.insert(0, extra)"
            if os.environ.get("GPU_CHECK_SITE_MODE") == "prepend"
            else "sys.path.append(extra)"
        )
        (custom / "sitecustomize.py").write_text(
            f"import sys\nimport torch  # noqa: F401\nextra = {EXTRA_SITE!r}\nif extra not in sys.path:\n    {where}\n"
        )
        entries.insert(0, str(custom))
    return os.pathsep.join(entries + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def check_ddp(root: Path, base: str, snapshot: str, *, cuda: bool, allow_cpu: bool) -> bool | None:
    """The same LoRA DPO job as 2 processes and as 1 with the same global batch: equal final loss. None: skipped."""
    gpus = torch.cuda.device_count() if cuda else 0
    if gpus < 2 and not (gpus == 0 and allow_cpu):
        have = f"{gpus} GPU{'s' if gpus != 1 else ''}" if cuda else "no GPU"
        print(f"DDP (2 processes): skipped: this machine has {have}; the check needs 2 (or --ddp-on-cpu without GPUs)")
        return None
    from annotations.training import TrainingSpec, run_training
    from annotations.training.distributed import WorkerLimits, run_training_launched

    common = {
        "kind": "dpo",
        "base_model": base,
        "criterion": "empathy",
        "max_steps": 5,
        "learning_rate": 3e-3,
        "max_length": 128,
        "logging_steps": 1,
        "save_steps": 10**6,
        "lora_dropout": 0.0,  # dropout masks are drawn per process; without them both runs compute the same thing
        "precision": "fp32",  # bf16 autocast rounds differently for batches of 2 and of 4
    }
    losses: dict[str, dict[int, float]] = {"one": {}, "two": {}}

    def recorder(name: str):
        def report(step: int, total: int, epoch: float, metrics: dict[str, float]) -> None:
            if "loss" in metrics:
                losses[name][step] = metrics["loss"]

        return report

    started = time.perf_counter()
    run_training(
        TrainingSpec(**common, batch_size=4), dataset_dir=snapshot, output_dir=root / "ddp-one", report=recorder("one")
    )
    one_seconds = time.perf_counter() - started
    os.environ["PYTHONPATH"] = child_python_path(root)
    started = time.perf_counter()
    result = run_training_launched(
        TrainingSpec(**common, batch_size=2, num_processes=2),
        dataset_dir=snapshot,
        output_dir=root / "ddp-two",
        limits=WorkerLimits(max_cpu_processes=2),
        report=recorder("two"),
    )
    two_seconds = time.perf_counter() - started
    last = max(losses["one"])
    difference = abs(losses["two"].get(last, float("nan")) - losses["one"][last])
    ok = result.status == "completed" and difference <= DDP_LOSS_TOLERANCE
    device = f"{gpus} GPUs, NCCL" if gpus else "CPU, gloo"
    print(
        f"DDP (2 processes, {device}): final loss {losses['two'].get(last, float('nan')):.6f} vs "
        f"{losses['one'][last]:.6f} with one process and the same global batch (|diff| {difference:.2e}, "
        f"target <= {DDP_LOSS_TOLERANCE:g}); wall {two_seconds:.1f} s vs {one_seconds:.1f} s incl. start-up: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


def run_checks(root: Path, args: argparse.Namespace, *, cuda: bool, bf16: bool) -> bool:
    base, snapshot = check_workspace(root, args.tiny)
    ok = True
    if cuda and not bf16:
        print("full fine-tune mixed precision: skipped: this GPU has no bf16")
    else:
        ok = check_mixed_precision(root, base, snapshot) and ok
    ddp = check_ddp(root, base, snapshot, cuda=cuda, allow_cpu=args.ddp_on_cpu)
    return ok and ddp is not False


def format_gib(value: float) -> str:
    return "n/a (cpu)" if value != value else f"{value:.2f} GiB"


def format_share(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}"


if __name__ == "__main__":
    sys.exit(main())
