"""A training job as several processes (GPUs, or CPU processes with gloo), launched with `accelerate launch`.

The calling process (the Celery worker) stays the supervisor and is the only one that talks to the database:

    supervisor ── accelerate launch ── rank 0 … rank N-1   (each: annotations.training.rank → run_training)

Files in `<output_dir>/.launch/` (removed when the run ends) connect them:

    launch.json           what every rank runs (spec, dataset, output directory), written by the supervisor
    stop                  written by the supervisor when should_stop() says so; rank 0 reads it after every
                          step and broadcasts it, so every rank stops after the same step (runner.ControlCallback)
    progress.jsonl        rank 0's reports, one JSON line per log event; the supervisor passes them to report()
    rank-<r>.json         each rank's pid and host at start, and its status and step at the end
    error-rank-<r>.txt    the traceback of a rank that raised
    outcome.json          rank 0's TrainingResult
    launcher.log          accelerate's and torch.distributed's output

A rank that raised fails the run (TrainingProcessFailed, with its traceback). A rank that vanished without a word
(killed by a signal or the out-of-memory killer) is TrainingProcessDied: the job goes back to the queue and resumes
from its last checkpoint. If the supervisor dies, its launcher and the ranks die with it (parent-death signals), so
no orphan keeps training while another worker resumes the job.

No Django here; torch is imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotations.training.spec import TrainingResult, TrainingSpec, validate_spec

LAUNCH_DIR = ".launch"
POLL_SECONDS = 0.25
STOP_CHECK_SECONDS = 1.0  # should_stop() reads the database; once a second is plenty
TERMINATE_GRACE_SECONDS = 30

Log = Callable[[str], None]


class TrainingLaunchError(ValueError):
    """The job asks for more than this worker can run (processes, machines); nothing was started."""


class TrainingProcessFailed(RuntimeError):
    """A rank raised: the run failed. The message names the rank and ends with its traceback."""


class TrainingProcessDied(RuntimeError):
    """A rank vanished (a signal, the out-of-memory killer): the run can resume from its last checkpoint."""


@dataclass(frozen=True)
class WorkerLimits:
    """What this worker may run. max_cpu_processes bounds processes on a machine without GPUs (each is a full
    copy of the model on the CPU). Multi-machine runs need main_process_ip (this machine's address, reachable
    from the others) and a fixed main_process_port; machine_rank is this machine's place (0 runs rank 0)."""

    max_cpu_processes: int = 2
    main_process_ip: str = ""
    main_process_port: int = 0
    machine_rank: int = 0


def local_process_limit(limits: WorkerLimits) -> tuple[int, str]:
    """How many processes this machine can run for one job, and what bounds it (for the error message)."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return count, f"this worker has {count} GPU{'s' if count != 1 else ''}"
    return limits.max_cpu_processes, (
        f"this worker has no GPU and allows {limits.max_cpu_processes} CPU processes (TRAINING_MAX_CPU_PROCESSES)"
    )


def check_launch(spec: TrainingSpec, limits: WorkerLimits) -> None:
    """Refuse, before starting anything, a job this worker cannot run; TrainingLaunchError says why."""
    per_machine = spec.num_processes // spec.num_machines
    available, bound = local_process_limit(limits)
    if per_machine > available:
        raise TrainingLaunchError(
            f"the job asks for {per_machine} processes on this machine (num_processes={spec.num_processes}, "
            f"num_machines={spec.num_machines}), but {bound}: launch it with num_processes={available} or fewer "
            "per machine, or route it to a worker with more GPUs"
        )
    if spec.num_machines > 1 and not (limits.main_process_ip and limits.main_process_port):
        raise TrainingLaunchError(
            f"the job asks for {spec.num_machines} machines, but this worker is not configured for multi-machine "
            "runs (TRAINING_MAIN_PROCESS_IP and TRAINING_MAIN_PROCESS_PORT)"
        )
    if spec.num_machines > 1 and limits.machine_rank != 0:
        raise TrainingLaunchError("only the worker of machine_rank 0 supervises a multi-machine run")
    if spec.distributed == "fsdp":
        import torch

        if not torch.cuda.is_available():
            raise TrainingLaunchError("distributed=fsdp needs GPUs; on the CPU use distributed=ddp")


def launch_command(spec: TrainingSpec, launch_file: Path, *, limits: WorkerLimits, machine_rank: int = 0) -> list[str]:
    """The `accelerate launch` command of one machine. `--multi_gpu` selects accelerate's multi-process launcher
    (torch.distributed.run) also on a CPU-only machine; TrainingArguments then puts the ranks on the CPU with
    gloo (runner._distributed_args). No restarts: a dead rank ends the launch, and the job decides what next."""
    port = limits.main_process_port or _free_port()
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(spec.num_processes),
        "--num_machines",
        str(spec.num_machines),
        "--machine_rank",
        str(machine_rank),
        "--main_process_port",
        str(port),
        "--max_restarts",
        "0",
        "--monitor_interval",
        "1",
        "--mixed_precision",
        "no",  # TrainingArguments decides (bf16 autocast with fp32 master weights; runner.use_bf16)
        "--dynamo_backend",
        "no",
    ]
    if spec.num_machines > 1:
        command += ["--main_process_ip", limits.main_process_ip, "--same_network"]
    else:
        command += ["--main_process_ip", "127.0.0.1"]
    return [*command, "-m", "annotations.training.rank", str(launch_file)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG


def run_training_launched(
    spec: TrainingSpec,
    *,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    limits: WorkerLimits,
    should_stop: Callable[[], bool] | None = None,
    report: Callable[[int, int, float, dict[str, float]], None] | None = None,
    log: Log | None = None,
) -> TrainingResult:
    """run_training as spec.num_processes processes: same arguments, same result, same output directory (and so
    the same checkpoints and resume). Raises TrainingLaunchError, TrainingProcessFailed or TrainingProcessDied."""
    from annotations.training.runner import RESULT_FILE, prepare_output_dir

    validate_spec(spec, dataset_dir=dataset_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    finished = output_dir / RESULT_FILE
    if finished.is_file():
        return TrainingResult(**json.loads(finished.read_text(encoding="utf-8")))
    check_launch(spec, limits)
    prepare_output_dir(spec, dataset_dir, output_dir)

    control = output_dir / LAUNCH_DIR
    shutil.rmtree(control, ignore_errors=True)
    control.mkdir()
    launch_file = control / "launch.json"
    launch_file.write_text(
        json.dumps(
            {
                "spec": spec.to_dict(),
                "dataset_dir": str(dataset_dir) if dataset_dir is not None else None,
                "output_dir": str(output_dir),
                "control_dir": str(control),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    command = launch_command(spec, launch_file, limits=limits)
    say = log or (lambda message: None)
    say(f"launching {spec.num_processes} processes ({spec.distributed}) on {spec.num_machines} machine(s)")
    if spec.num_machines > 1:
        others = launch_command(spec, launch_file, limits=limits, machine_rank=1)
        say("on every other machine (machine_rank 1 .. num_machines-1), run: " + " ".join(others))
    try:
        return _supervise(command, control, should_stop=should_stop, report=report, log=say)
    finally:
        shutil.rmtree(control, ignore_errors=True)


def _rank_environment() -> dict[str, str]:
    env = dict(os.environ)
    # Each rank one thread unless told otherwise: N processes on N cores, not N x N threads fighting for them.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    # The launcher must not pick up a stray accelerate config file of whoever runs the worker.
    env["ACCELERATE_CONFIG_FILE"] = os.devnull
    env["TRAINING_SUPERVISOR_PID"] = str(os.getpid())
    return env


def _supervise(
    command: list[str],
    control: Path,
    *,
    should_stop: Callable[[], bool] | None,
    report: Callable[[int, int, float, dict[str, float]], None] | None,
    log: Log,
) -> TrainingResult:
    launcher_log = (control / "launcher.log").open("wb")
    process = subprocess.Popen(
        command,
        stdout=launcher_log,
        stderr=subprocess.STDOUT,
        env=_rank_environment(),
        start_new_session=True,  # one process group: launcher and ranks are ended together
        preexec_fn=set_parent_death_signal,
    )
    progress = control / "progress.jsonl"
    offset = 0
    stop_asked = False
    next_check = 0.0
    announced: set[int] = set()
    try:
        while True:
            code = process.poll()
            offset = _pass_progress(progress, offset, report)
            _announce_ranks(control, announced, log)
            if code is not None:
                break
            if should_stop is not None and not stop_asked and time.monotonic() >= next_check:
                next_check = time.monotonic() + STOP_CHECK_SECONDS
                if should_stop():
                    (control / "stop").write_text("stop\n", encoding="utf-8")
                    stop_asked = True
            time.sleep(POLL_SECONDS)
    finally:
        if process.poll() is None:  # the supervisor itself is interrupted (soft time limit): end the ranks
            _end_process_group(process)
        launcher_log.close()
    _pass_progress(progress, offset, report)
    ranks = _rank_records(control)
    for rank, record in sorted(ranks.items()):
        if "status" in record:
            log(f"rank {rank} {record['status']} at step {record.get('global_step')}")
    outcome = control / "outcome.json"
    if code == 0 and outcome.is_file():
        return TrainingResult(**json.loads(outcome.read_text(encoding="utf-8")))

    errors = {
        int(path.stem.rsplit("-", 1)[1]): path.read_text(encoding="utf-8") for path in control.glob("error-rank-*.txt")
    }
    silent = sorted(rank for rank, record in ranks.items() if "status" not in record and rank not in errors)
    tail = _tail(control / "launcher.log")
    if errors and not silent:
        rank = min(errors)
        raise TrainingProcessFailed(f"training process rank {rank} failed:\n{errors[rank][-6000:]}")
    which = f"rank {', '.join(map(str, silent))}" if silent else "a training process"
    raise TrainingProcessDied(
        f"{which} died without an error (killed, e.g. out of memory); launcher exit code {code}\n{tail}"
    )


def _pass_progress(path: Path, offset: int, report: Callable[..., None] | None) -> int:
    """Hand rank 0's new complete progress lines to report(); returns the new offset."""
    if not path.is_file():
        return offset
    with path.open("rb") as source:
        source.seek(offset)
        data = source.read()
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next pass
    for line in data[:end].splitlines():
        event = json.loads(line)
        if report is not None:
            report(event["step"], event["total_steps"], event["epoch"], event["metrics"])
    return offset + end


def _rank_records(control: Path) -> dict[int, dict[str, Any]]:
    records = {}
    for path in control.glob("rank-*.json"):
        with contextlib.suppress(ValueError, OSError):
            records[int(path.stem.rsplit("-", 1)[1])] = json.loads(path.read_text(encoding="utf-8"))
    return records


def _announce_ranks(control: Path, announced: set[int], log: Log) -> None:
    for rank, record in sorted(_rank_records(control).items()):
        if rank not in announced:
            announced.add(rank)
            log(f"rank {rank} started: pid {record.get('pid')} on {record.get('host')}")


def _end_process_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=TERMINATE_GRACE_SECONDS)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
