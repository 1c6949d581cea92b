"""One process of a multi-process training run: `python -m annotations.training.rank <launch.json>`, started by
`accelerate launch` (annotations.training.distributed). Runs run_training like a single process would; rank 0
alone reads the supervisor's stop file and writes progress and the outcome. No Django."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import traceback
from pathlib import Path

from annotations.training.distributed import set_parent_death_signal
from annotations.training.runner import process_rank, run_training
from annotations.training.spec import TrainingSpec


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    partial.replace(path)  # the supervisor never reads half a file


def _watch_supervisor(pid: int) -> None:
    """Exit when the supervising worker process is gone (its launcher would take us along, but a launcher that
    was itself killed cannot): an orphan must not keep training while another worker resumes the job."""
    import time

    while True:
        time.sleep(2)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def main(argv: list[str]) -> int:
    set_parent_death_signal()  # the launcher dies: so does this rank
    supervisor = int(os.environ.get("TRAINING_SUPERVISOR_PID", "0") or 0)
    if supervisor:
        threading.Thread(target=_watch_supervisor, args=(supervisor,), daemon=True).start()
    launch = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    control = Path(launch["control_dir"])
    rank = process_rank()
    record = {"pid": os.getpid(), "host": socket.gethostname(), "local_rank": int(os.environ.get("LOCAL_RANK", 0))}
    on_this_machine = control.is_dir()  # ranks of other machines see it only on shared storage
    if on_this_machine:
        _write_json(control / f"rank-{rank}.json", record)

    should_stop = report = None
    if rank == 0:
        stop_file = control / "stop"
        progress = control / "progress.jsonl"

        def should_stop() -> bool:
            return stop_file.exists()

        def report(step: int, total_steps: int, epoch: float, metrics: dict[str, float]) -> None:
            line = json.dumps({"step": step, "total_steps": total_steps, "epoch": epoch, "metrics": metrics})
            with progress.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    try:
        result = run_training(
            TrainingSpec.from_dict(launch["spec"]),
            dataset_dir=launch["dataset_dir"],
            output_dir=launch["output_dir"],
            should_stop=should_stop,
            report=report,
        )
    except BaseException:
        if on_this_machine:
            (control / f"error-rank-{rank}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise
    if on_this_machine:
        _write_json(
            control / f"rank-{rank}.json", {**record, "status": result.status, "global_step": result.global_step}
        )
        if rank == 0:
            _write_json(control / "outcome.json", result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
