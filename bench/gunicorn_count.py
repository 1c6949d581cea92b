"""gunicorn config for bench/rating_loop.py: counts the SQL statements each worker sends (bench only).

Every execute/executemany through Django's cursor wrapper counts one, and so do BEGIN (autocommit switched off
for a transaction) and COMMIT/ROLLBACK, as Django's own query log counts them. Each worker writes its running
total to $BENCH_STATEMENTS_DIR/<pid> every 0.2 s; the bench sums the files before and after a measured window.
"""

import os
import threading
import time
from pathlib import Path

_count = [0]
_lock = threading.Lock()


def _bump() -> None:
    with _lock:
        _count[0] += 1


def post_worker_init(worker) -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    def wrap(cls, name, when=None):
        original = getattr(cls, name)

        def counted(self, *args, **kwargs):
            if when is None or when(*args, **kwargs):
                _bump()
            return original(self, *args, **kwargs)

        setattr(cls, name, counted)

    wrap(CursorWrapper, "execute")
    wrap(CursorWrapper, "executemany")
    wrap(BaseDatabaseWrapper, "set_autocommit", when=lambda autocommit, *a, **k: not autocommit)  # BEGIN
    wrap(BaseDatabaseWrapper, "commit")
    wrap(BaseDatabaseWrapper, "rollback")
    folder = Path(os.environ["BENCH_STATEMENTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / str(os.getpid())

    def report() -> None:
        scratch = folder / f".{os.getpid()}.tmp"
        while True:
            # Written aside and renamed: a reader never sees a half-written (empty) file.
            scratch.write_text(str(_count[0]))
            os.replace(scratch, target)
            time.sleep(0.2)

    threading.Thread(target=report, daemon=True).start()
