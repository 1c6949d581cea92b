"""A preference export from PostgreSQL against PostgreSQL's own COPY of the same rows, in the same run.

    .venv/bin/python bench/export.py                  # 200,000 comparisons x 5 ratings = 1,000,000 ratings
    .venv/bin/python bench/export.py --quick          # 2,000 comparisons: the smoke test's size
    .venv/bin/python bench/export.py --core           # the pure core alone on generated records (no database)

Creates a dedicated database (evalplatform_bench, dropped afterwards unless --keep), migrates it, generates
the study straight into PostgreSQL (INSERT ... SELECT over generate_series), then times, interleaved and
--runs times each:

- export: the Django side's streaming path (annotations.services.exports.export_write_files): one SELECT
  through a server-side cursor in chunks, records into the pure core, trl-dpo JSONL files, card, manifest;
- COPY: `COPY (<the same SELECT>) TO STDOUT`, written to a file, as the floor for reading those rows.

Prints the medians, their ratio (target: export within 3x COPY) and the export's peak memory (resident set
size sampled every 20 ms while it runs, and the process's lifetime peak; target: under 300 MB).

The data generator `populate_study` is also used by the tests (tests/exports) for studies too big to build
row by row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = "evalplatform_bench"
TARGET_RATIO = 3.0
TARGET_PEAK_MB = 300.0

# Words for generated text: all written here, nothing from real people.
_WORDS = (
    "I hear how heavy this week has been and it makes sense that you feel worn out "
    "would it help to talk through what felt hardest you deserve support and you are not alone "
    "if you ever feel unsafe please reach out to a crisis line or someone you trust right away"
).split()


def populate_study(
    cursor: Any,
    *,
    study_id: int,
    criterion_ids: list[int],
    comparisons: int,
    ratings_per_comparison: int,
    raters: int,
    max_value: int,
    systems: int = 4,
    label_prefix: str = "bench",
    words_per_response: int = 60,
) -> None:
    """Generate prompts, responses, comparisons, submitted assignments and ratings with set-based SQL.

    Each comparison gets `ratings_per_comparison` distinct raters (external raters `<prefix>-r<i>`); each
    rating is the comparison's hidden preference 70% of the time, else random, on -max_value..max_value;
    about 1% of assignments carry the "both unacceptable" flag. Deterministic given the same ids.
    """
    if ratings_per_comparison > raters:
        raise ValueError("ratings_per_comparison must not exceed raters (one rating per rater and comparison)")
    pairs_per_prompt = systems * (systems - 1) // 2
    prompts = -(-comparisons // pairs_per_prompt)
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in _WORDS) + "]"
    n_words = len(_WORDS)
    execute = cursor.execute
    execute(
        "INSERT INTO annotations_system (study_id, name, description, created_at) "
        "SELECT %s, %s || '-system-' || s, '', now() FROM generate_series(1, %s) s",
        [study_id, label_prefix, systems],
    )
    execute(
        f"""INSERT INTO annotations_prompt (study_id, external_id, messages, meta, content_hash, created_at)
        SELECT %s, %s || '-p' || i,
               jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                   'Scenario ' || i || ': ' || array_to_string(ARRAY(
                       SELECT ({words})[1 + (abs(hashint8((i * 97 + w)::int8)) %% {n_words})]
                       FROM generate_series(1, 30) w), ' '))),
               jsonb_build_object('category', 'category-' || (i %% 4)),
               md5(%s || i), now()
        FROM generate_series(1, %s) i""",  # noqa: S608 (constants only)
        [study_id, label_prefix, label_prefix, prompts],
    )
    execute(
        f"""INSERT INTO annotations_response
            (study_id, prompt_id, system_id, external_id, content, meta, content_hash, excluded,
             excluded_from_exports, created_at)
        SELECT p.study_id, p.id, s.id, p.external_id || '-' || s.name,
               array_to_string(ARRAY(
                   SELECT ({words})[1 + (abs(hashint8((p.id * 131 + s.id * 7 + w)::int8)) %% {n_words})]
                   FROM generate_series(1, {int(words_per_response)}) w), ' '),
               '{{}}', md5(p.external_id || s.name), false, false, now()
        FROM annotations_prompt p CROSS JOIN annotations_system s
        WHERE p.study_id = %s AND s.study_id = %s""",  # noqa: S608 (constants only)
        [study_id, study_id],
    )
    execute(
        """INSERT INTO annotations_comparison
            (study_id, prompt_id, response_first_id, response_second_id, is_gold, gold_expected, gold_explanation,
             is_calibration, excluded, active_assignments, created_at)
        SELECT r1.study_id, r1.prompt_id, r1.id, r2.id, false, '{}', '', false, false, %s, now()
        FROM annotations_response r1 JOIN annotations_response r2 ON r2.prompt_id = r1.prompt_id AND r1.id < r2.id
        WHERE r1.study_id = %s
        ORDER BY r1.prompt_id, r1.id, r2.id
        LIMIT %s""",
        [ratings_per_comparison, study_id, comparisons],
    )
    execute(
        "INSERT INTO annotations_rater (kind, label, created_at) "
        "SELECT 'external', %s || '-r' || i, now() FROM generate_series(1, %s) i "
        "ON CONFLICT (kind, label) DO NOTHING",
        [label_prefix, raters],
    )
    execute("DROP TABLE IF EXISTS bench_raters")
    execute(
        """CREATE TEMP TABLE bench_raters ON COMMIT DROP AS
        SELECT row_number() OVER (ORDER BY id) - 1 AS position, id FROM annotations_rater
        WHERE kind = 'external' AND label LIKE %s || '-r%%'""",
        [label_prefix],
    )
    execute(
        """INSERT INTO annotations_assignment
            (public_id, study_id, comparison_id, rater_id, status, purpose, left_is_first, order_seed, leased_until,
             both_unacceptable, unacceptable_reason, skip_reason, rationale, draft, total_seconds, active_seconds,
             created_at, submitted_at)
        SELECT gen_random_uuid(), c.study_id, c.id, br.id, 'submitted', 'rating', (hashint8((c.id + k)::int8) %% 2 = 0), NULL,
               NULL, abs(hashint8((c.id * 13 + k)::int8)) %% 100 = 0, '', '', '', '{}', 30, 25, now(), now()
        FROM annotations_comparison c CROSS JOIN generate_series(0, %s - 1) k
        JOIN bench_raters br ON br.position = (c.id * 7 + k) %% %s
        WHERE c.study_id = %s""",
        [ratings_per_comparison, raters, study_id],
    )
    execute(
        """INSERT INTO annotations_rating (assignment_id, criterion_id, value, rationale, revision, created_at,
                                           updated_at)
        SELECT a.id, cr.id,
               CASE WHEN abs(hashint8((a.id * 17 + cr.id)::int8)) %% 10 < 7
                    THEN (abs(hashint8((a.comparison_id * 3 + cr.id)::int8)) %% (2 * %s + 1)) - %s
                    ELSE (abs(hashint8((a.id * 29 + cr.id)::int8)) %% (2 * %s + 1)) - %s END,
               '', 1, a.submitted_at, a.submitted_at
        FROM annotations_assignment a CROSS JOIN unnest(%s::int[]) AS cr(id)
        WHERE a.study_id = %s""",
        [max_value, max_value, max_value, max_value, criterion_ids, study_id],
    )


# ---- the benchmark ----------------------------------------------------------------------------------------


class RssSampler:
    """Peak resident set size of this process, sampled in a thread while a block runs."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(statement)


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalplatform.test_settings")
    os.environ.setdefault("EVALPLATFORM_VAR_DIR", str(Path(tempfile.gettempdir()) / "ep-bench-export"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=200_000)
    parser.add_argument("--ratings-per-comparison", type=int, default=5)
    parser.add_argument("--raters", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 comparisons, one run (smoke test)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument("--database", default=BENCH_DB, help="name of the database created for the run")
    parser.add_argument(
        "--core", action="store_true", help="only the pure core on generated records, no database (its own benchmark)"
    )
    args = parser.parse_args()
    if args.core:
        _run_core(args.comparisons)
        return
    if args.quick:
        args.comparisons, args.runs = 2_000, 1

    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and underscores only")
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{args.database}"
    _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    _admin_execute(f"CREATE DATABASE {args.database}")
    try:
        _setup_django(database_url)
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


def _run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction

    from annotations.models import PreferenceExport
    from annotations.selectors_exports import export_records_sql
    from annotations.services.exports import export_query, export_write_files
    from annotations.services.studies import study_create, study_criteria

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    study = study_create(slug="bench", title="Export benchmark", scale_points=3, criterion_keys=["empathy"])
    criterion_ids = [c.pk for c in study_criteria(study)]
    with transaction.atomic(), connection.cursor() as cursor:
        populate_study(
            cursor,
            study_id=study.pk,
            criterion_ids=criterion_ids,
            comparisons=args.comparisons,
            ratings_per_comparison=args.ratings_per_comparison,
            raters=args.raters,
            max_value=study.max_abs_value,
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM annotations_rating")
        ratings = cursor.fetchone()[0]
    print(
        f"generated {args.comparisons:,} comparisons, {ratings:,} ratings in {time.perf_counter() - started:.1f}s "
        f"(database {connection.settings_dict['NAME']})"
    )

    export = PreferenceExport.objects.create(
        study=study,
        format="trl-dpo",
        file_format="jsonl",
        criterion_keys=["empathy"],
        policy={},
        split={"seed": 0, "test_fraction": 0.1},
        filters={"systems": [], "submitted_before": None, "exclude_gold_items": False},
    )
    sql, params = export_records_sql(export_query(export))
    copy_sql = f"COPY ({connection.ops.compose_sql(sql, params)}) TO STDOUT"

    scratch = Path(tempfile.mkdtemp(prefix="ep-bench-export-"))
    export_seconds: list[float] = []
    copy_seconds: list[float] = []
    peaks: list[int] = []
    try:
        for run in range(args.runs):
            copy_file = scratch / f"copy-{run}.tsv"
            started = time.perf_counter()
            copied = _copy_to_file(connection, copy_sql, copy_file)
            copy_seconds.append(time.perf_counter() - started)
            copy_file.unlink()

            output = scratch / f"export-{run}"
            with RssSampler() as sampler:
                started = time.perf_counter()
                result = export_write_files(export=export, output_dir=output, agreement={})
                export_seconds.append(time.perf_counter() - started)
            peaks.append(sampler.peak)
            size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
            rows = sum(result.manifest["file_rows"].values())
            print(
                f"run {run + 1}: export {export_seconds[-1]:.2f}s ({result.manifest['comparisons']['total']:,} "
                f"comparisons, {rows:,} rows, {size / 1e6:.0f} MB), COPY {copy_seconds[-1]:.2f}s "
                f"({copied / 1e6:.0f} MB), export peak RSS {sampler.peak / 1e6:.0f} MB"
            )
            shutil.rmtree(output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    import resource

    export_median = statistics.median(export_seconds)
    copy_median = statistics.median(copy_seconds)
    ratio = export_median / copy_median
    peak_mb = max(peaks) / 1e6
    lifetime_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # ru_maxrss is in KiB
    print(
        f"trl-dpo JSONL from {ratings:,} ratings: export median {export_median:.2f}s, COPY median {copy_median:.2f}s, "
        f"ratio {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x); peak RSS during export {peak_mb:.0f} MB, process "
        f"lifetime peak {lifetime_mb:.0f} MB (target < {TARGET_PEAK_MB:.0f} MB)"
    )


def _run_core(comparisons: int) -> None:
    """The pure core's own benchmark (annotations/exporting/benchmark.py) for the same export shape."""
    sys.path.insert(0, str(ROOT))
    from annotations.exporting import benchmark

    sys.argv = [sys.argv[0], "--comparisons", str(comparisons), "--format", "trl-dpo", "--file-format", "jsonl"]
    sys.argv += ["--criteria", "1"]
    benchmark.main()


def _copy_to_file(connection: Any, copy_sql: str, path: Path) -> int:
    """Run COPY ... TO STDOUT through the same driver and write what it sends to a file; bytes copied."""
    connection.ensure_connection()
    copied = 0
    with connection.connection.cursor() as cursor, cursor.copy(copy_sql) as copy, open(path, "wb") as out:
        for data in copy:
            out.write(data)
            copied += len(data)
    return copied


if __name__ == "__main__":
    main()
