"""Multi-process runs, core side: the options, the worker's bound, the launch command, and how the supervisor
reads a run whose processes failed or died (stand-in processes: no training, so these run in a second)."""

import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from annotations.training import TrainingSpec, TrainingSpecError, validate_spec
from annotations.training.distributed import (
    TrainingLaunchError,
    TrainingProcessDied,
    TrainingProcessFailed,
    WorkerLimits,
    _supervise,
    check_launch,
    launch_command,
)


@pytest.fixture
def model_dir(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return str(directory)


def errors_of(spec: TrainingSpec) -> dict[str, str]:
    with pytest.raises(TrainingSpecError) as caught:
        validate_spec(spec)
    return caught.value.errors


def test_the_process_options_are_checked_before_a_job_is_queued(model_dir):
    base = {"kind": "dpo", "base_model": model_dir, "criterion": "empathy"}
    validate_spec(TrainingSpec(**base, num_processes=4, num_machines=2))  # two machines of two processes
    assert "num_processes" in errors_of(TrainingSpec(**base, num_processes=0))
    assert (
        "multiple of num_machines" in errors_of(TrainingSpec(**base, num_processes=3, num_machines=2))["num_processes"]
    )
    assert "at most 1,024" in errors_of(TrainingSpec(**base, num_processes=5000))["num_processes"]
    assert "distributed" in errors_of(TrainingSpec(**base, num_processes=2, distributed="zero3"))
    # FSDP shards full fine-tunes; a LoRA job replicates its small adapter with DDP.
    assert "use_lora=false" in errors_of(TrainingSpec(**base, num_processes=2, distributed="fsdp"))["distributed"]
    validate_spec(TrainingSpec(**base, num_processes=2, distributed="fsdp", use_lora=False))
    merge = TrainingSpec(kind="merge", base_model=model_dir, merge_sources=[model_dir, model_dir], merge_weights=[1, 1])
    validate_spec(merge)
    assert errors_of(TrainingSpec(**{**merge.to_dict(), "num_processes": 2}))["num_processes"] == (
        "a merge runs in one process"
    )


def test_the_worker_bounds_the_processes_with_a_clear_message(model_dir):
    spec = TrainingSpec(kind="dpo", base_model=model_dir, criterion="empathy", num_processes=3)
    with pytest.raises(TrainingLaunchError) as caught:
        check_launch(spec, WorkerLimits(max_cpu_processes=2))
    message = str(caught.value)
    assert "asks for 3 processes" in message and "TRAINING_MAX_CPU_PROCESSES" in message
    check_launch(spec, WorkerLimits(max_cpu_processes=3))

    two_machines = TrainingSpec(kind="dpo", base_model=model_dir, criterion="empathy", num_processes=4, num_machines=2)
    with pytest.raises(TrainingLaunchError, match="TRAINING_MAIN_PROCESS_IP"):
        check_launch(two_machines, WorkerLimits(max_cpu_processes=2))
    fsdp = TrainingSpec(
        kind="dpo", base_model=model_dir, criterion="empathy", num_processes=2, distributed="fsdp", use_lora=False
    )
    with pytest.raises(TrainingLaunchError, match="fsdp needs GPUs"):
        check_launch(fsdp, WorkerLimits(max_cpu_processes=2))


def test_the_launch_command_is_accelerate_launch_of_the_rank_module(model_dir, tmp_path):
    spec = TrainingSpec(kind="dpo", base_model=model_dir, criterion="empathy", num_processes=4, num_machines=2)
    limits = WorkerLimits(main_process_ip="10.0.0.5", main_process_port=29555)
    command = launch_command(spec, tmp_path / "launch.json", limits=limits, machine_rank=1)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    flags = dict(itertools.pairwise(command))
    assert flags["--num_processes"] == "4" and flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"
    assert flags["--main_process_ip"] == "10.0.0.5" and flags["--main_process_port"] == "29555"
    assert flags["--max_restarts"] == "0"
    assert command[-3:] == ["-m", "annotations.training.rank", str(tmp_path / "launch.json")]


def fake_ranks(tmp_path: Path, body: str) -> list[str]:
    """A stand-in for the launcher: a Python script that plays the ranks' part in the control directory."""
    script = tmp_path / "fake_launch.py"
    script.write_text(f"import json, os, signal, sys\nfrom pathlib import Path\ncontrol = Path(sys.argv[1])\n{body}")
    return [sys.executable, str(script), str(tmp_path / "control")]


@pytest.fixture
def control(tmp_path):
    directory = tmp_path / "control"
    directory.mkdir()
    return directory


def supervise(command, control, **kwargs):
    logged: list[str] = []
    reports: list[tuple] = []
    try:
        return (
            _supervise(
                command, control, should_stop=None, report=lambda *a: reports.append(a), log=logged.append, **kwargs
            ),
            logged,
            reports,
        )
    except (TrainingProcessDied, TrainingProcessFailed) as error:
        error.logged, error.reports = logged, reports
        raise


def test_rank_zero_progress_reaches_report_and_the_outcome_is_the_result(tmp_path, control):
    body = textwrap.dedent(
        """
        for rank in (0, 1):
            (control / f"rank-{rank}.json").write_text(json.dumps({"pid": 1, "host": "h", "status": "completed", "global_step": 2}))
        with (control / "progress.jsonl").open("w") as out:
            for step in (1, 2):
                out.write(json.dumps({"step": step, "total_steps": 2, "epoch": 0.5, "metrics": {"loss": 0.5}}) + "\\n")
        result = {"status": "completed", "output_dir": "x", "global_step": 2, "total_steps": 2,
                  "resumed_from_step": None, "metrics": {"heldout/empathy/n": 8.0}}
        (control / "outcome.json").write_text(json.dumps(result))
        """
    )
    result, logged, reports = supervise(fake_ranks(tmp_path, body), control)
    assert result.status == "completed" and result.metrics == {"heldout/empathy/n": 8.0}
    assert [r[0] for r in reports] == [1, 2] and reports[0][3] == {"loss": 0.5}
    assert "rank 0 completed at step 2" in logged and "rank 1 completed at step 2" in logged


def test_a_rank_that_raised_fails_the_run_with_its_traceback(tmp_path, control):
    body = textwrap.dedent(
        """
        (control / "rank-0.json").write_text(json.dumps({"pid": 1, "host": "h"}))
        (control / "rank-1.json").write_text(json.dumps({"pid": 2, "host": "h"}))
        (control / "error-rank-1.txt").write_text("Traceback ...\\nValueError: no training pairs")
        (control / "error-rank-0.txt").write_text("Traceback ...\\nValueError: no training pairs")
        sys.exit(1)
        """
    )
    with pytest.raises(TrainingProcessFailed) as caught:
        supervise(fake_ranks(tmp_path, body), control)
    assert "rank 0 failed" in str(caught.value) and "ValueError: no training pairs" in str(caught.value)


def test_a_rank_that_vanished_is_a_death_to_resume_from_not_a_failure(tmp_path, control):
    # Rank 1 was killed (no word from it); rank 0 then raised on the broken connection: still a death.
    body = textwrap.dedent(
        """
        (control / "rank-0.json").write_text(json.dumps({"pid": 1, "host": "h"}))
        (control / "rank-1.json").write_text(json.dumps({"pid": 2, "host": "h"}))
        (control / "error-rank-0.txt").write_text("RuntimeError: Connection closed by peer")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    with pytest.raises(TrainingProcessDied) as caught:
        supervise(fake_ranks(tmp_path, body), control)
    assert str(caught.value).startswith("rank 1 died without an error")
    assert "exit code -9" in str(caught.value)


def test_a_stop_asked_by_the_supervisor_reaches_rank_zero_as_the_stop_file(tmp_path, control):
    body = textwrap.dedent(
        """
        import time
        (control / "progress.jsonl").write_text(json.dumps({"step": 1, "total_steps": 9, "epoch": 0.1, "metrics": {}}) + "\\n")
        while not (control / "stop").exists():
            time.sleep(0.05)
        result = {"status": "stopped", "output_dir": "x", "global_step": 1, "total_steps": 9,
                  "resumed_from_step": None, "metrics": {}}
        (control / "outcome.json").write_text(json.dumps(result))
        """
    )
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) >= 2

    result = _supervise(fake_ranks(tmp_path, body), control, should_stop=should_stop, report=None, log=lambda m: None)
    assert result.status == "stopped" and len(asked) == 2


def test_the_rank_entry_point_imports_no_django():
    code = "import sys, annotations.training.rank; print('django' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False"]


def test_a_process_started_with_the_parent_death_signal_dies_with_its_parent(tmp_path):
    """What keeps a dead worker's ranks from training on as orphans: launcher and ranks die with their parent."""
    pid_file = tmp_path / "grandchild.pid"
    parent_code = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from annotations.training.distributed import set_parent_death_signal
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=set_parent_death_signal)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
        """
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=root)
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(pid_file.read_text())
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not process_gone(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(grandchild)
    finally:
        if parent.poll() is None:
            parent.kill()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True
