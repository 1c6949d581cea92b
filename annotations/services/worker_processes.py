"""Which worker process holds a job, and whether that process is gone.

A run records its holder as "<celery node name> pid <process id>". When a prefork pool child dies (the
out-of-memory killer, a segfault in a CUDA kernel), Celery requeues its late-acknowledged message at once and
a fresh child of the same node receives it: its claim finds the job held by a process of its own node that
no longer exists, and takes the job back within seconds instead of waiting for the heartbeat to go stale.
A holder on another node is never judged from here: process ids mean nothing across machines.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

PID_SEPARATOR = " pid "


def worker_identity(node: str) -> str:
    """The holder string for this process under Celery node `node`; empty outside a worker (a command)."""
    return f"{node}{PID_SEPARATOR}{os.getpid()}"[:200] if node else ""


def worker_node(holder: str) -> str:
    """The node name of a holder string (a holder written before pids were recorded is a bare node name)."""
    node, separator, _ = holder.rpartition(PID_SEPARATOR)
    return node if separator else holder


def worker_pid(holder: str) -> int | None:
    _, separator, pid = holder.rpartition(PID_SEPARATOR)
    return int(pid) if separator and pid.isdigit() else None


def held_by_dead_local_process(holder: str, node: str) -> bool:
    """True when `holder` names a process of node `node` (this machine's worker) that has exited."""
    pid = worker_pid(holder)
    if not node or pid is None or worker_node(holder) != node or pid == os.getpid():
        return False
    return process_gone(pid)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    try:  # a child that died but was not reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


class Heartbeat:
    """A thread that calls `beat()` every `seconds` until stopped, independent of how long one unit of work
    takes (loading a model, one slow batch); `beat()` returning False (the run lost its row) ends it."""

    def __init__(self, beat: Callable[[], bool], *, seconds: float, name: str) -> None:
        self._beat = beat
        self._seconds = seconds
        self._done = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from django.db import DatabaseError, connection

        try:
            while not self._done.wait(self._seconds):
                try:
                    if not self._beat():
                        self.lost.set()
                        return
                except DatabaseError:
                    logger.exception("heartbeat %s failed; retrying", self._thread.name)
                    connection.close()
        finally:
            connection.close()
