"""The Disputes page's read (annotations.services.adjudication.disputed_items) at study scale, against the
plainest query over the same rows, in the same run.

    .venv/bin/python bench/disputes.py                     # 50,000 comparisons x 3 ratings x 7 criteria
    .venv/bin/python bench/disputes.py --comparisons 5000  # smaller

Creates a dedicated database (dropped afterwards), generates the study with bench/export.py's populate_study
(every criterion rated, each rating the hidden preference 70% of the time), then times, interleaved and
--runs times each:

- disputes: disputed_items(study) (vote counts per comparison and criterion in SQL, narrowed to candidates
  with at least two options chosen, then the export's is_disputed in Python);
- baseline: the same GROUP BY (comparison, criterion) with its three counts, fetched in full, no filter.

Then the item page's "next unresolved" (next_unresolved, a window of comparisons ahead) from the middle item.

Prints the medians and their ratio, and the queries a Disputes page and an item page make (they must not grow
with the study).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import PG_ADMIN_URL, _admin_execute, _setup_django, populate_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=50_000)
    parser.add_argument("--ratings-per-comparison", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", default="evalplatform_bench_disputes")
    args = parser.parse_args()
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and underscores only")
    _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    _admin_execute(f"CREATE DATABASE {args.database}")
    try:
        _setup_django(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{args.database}")
        _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        _admin_execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


def _run(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.models import Count, Q
    from django.test.utils import CaptureQueriesContext

    from annotations.models import Assignment, Rating
    from annotations.services.adjudication import disputed_items, next_unresolved
    from annotations.services.studies import study_create, study_criteria

    call_command("migrate", verbosity=0)
    study = study_create(slug="bench", title="Disputes benchmark", scale_points=3)
    criteria = study_criteria(study)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        populate_study(
            cursor,
            study_id=study.pk,
            criterion_ids=[c.pk for c in criteria],
            comparisons=args.comparisons,
            ratings_per_comparison=args.ratings_per_comparison,
            raters=max(10, args.ratings_per_comparison),
            max_value=1,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    ratings = Rating.objects.filter(assignment__study=study).count()
    print(f"generated {args.comparisons:,} comparisons, {ratings:,} ratings in {time.perf_counter() - started:.1f}s")

    def baseline() -> int:
        rows = (
            Rating.objects.filter(
                assignment__study=study, assignment__status=Assignment.Status.SUBMITTED, criterion__in=criteria
            )
            .values("assignment__comparison_id", "criterion_id")
            .annotate(a=Count("id", filter=Q(value__lt=0)), t=Count("id", filter=Q(value=0)), b=Count("id"))
            .values_list("assignment__comparison_id", "criterion_id", "a", "t", "b")
        )
        return sum(1 for _ in rows.iterator(chunk_size=5000))

    timings: dict[str, list[float]] = {"disputes": [], "baseline": []}
    found = 0
    for _ in range(args.runs):
        for name, run in (("disputes", lambda: len(disputed_items(study=study))), ("baseline", baseline)):
            begun = time.perf_counter()
            result = run()
            timings[name].append(time.perf_counter() - begun)
            if name == "disputes":
                found = result
    disputes, base = statistics.median(timings["disputes"]), statistics.median(timings["baseline"])
    print(f"disputed items found: {found:,}")
    print(f"disputes median {disputes:.2f}s, baseline GROUP BY median {base:.2f}s, ratio {disputes / base:.2f}x")

    with CaptureQueriesContext(connection) as queries:
        items = disputed_items(study=study)
    print(f"queries for disputed_items at {args.comparisons:,} comparisons: {len(queries)}")
    # The item page's "next unresolved" looks a window ahead instead of counting every vote of the study.
    middle = items[len(items) // 2]
    begun = time.perf_counter()
    following = next_unresolved(study=study, after=middle.key)
    print(
        f"next_unresolved from the middle: {time.perf_counter() - begun:.3f}s "
        f"({following.comparison_id if following else None}), {100 * (time.perf_counter() - begun) / disputes:.1f}% "
        "of the full count"
    )


if __name__ == "__main__":
    main()
