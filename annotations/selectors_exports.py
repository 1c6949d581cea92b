"""Reads for preference exports: the study's comparisons with their votes, streamed as ComparisonRecords.

One SQL statement returns one row per comparison (prompt, both responses with their systems, and the votes
aggregated into a JSON array by PostgreSQL), ordered by comparison id, read through a server-side cursor in
chunks: memory stays flat however large the study is. `export_records_sql` is that statement, so the
benchmark can time PostgreSQL's own `COPY (<the same SELECT>) TO STDOUT` against the export.

All reads of one export happen in one transaction (REPEATABLE READ on PostgreSQL when it is the outermost
one), so the count, the "data as of" time and the records describe the same data.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from annotations.exporting import ComparisonRecord, Message, ResponseRecord, VoteRecord
from annotations.models import (
    Adjudication,
    Assignment,
    Comparison,
    Criterion,
    Judge,
    Judgment,
    Prompt,
    Rater,
    Rating,
    Response,
    System,
)
from annotations.selectors_reports import REPORTED_PURPOSES

CHUNK_ROWS = 2000


@dataclass(frozen=True)
class ExportQuery:
    """What an export reads. `criterion_ids` are the study's Criterion rows (the rubric versions) exported.

    systems: only comparisons whose two responses both come from these systems (empty: all).
    submitted_before: only ratings submitted, and judgments stored, before this time (None: all).
    exclude_gold_items: leave out comparisons marked as gold items.
    use_adjudications: attach the study's adjudications to the records (policy decision "adjudicated").

    Always, not a setting: a comparison with a response excluded from exports (safety queue) is left out.
    """

    study_id: int
    criterion_ids: tuple[int, ...]
    include_judges: bool = False
    systems: tuple[str, ...] = ()
    submitted_before: datetime.datetime | None = None
    exclude_gold_items: bool = False
    use_adjudications: bool = False


def _t(model: Any) -> str:
    return model._meta.db_table


def _vote_sources(query: ExportQuery) -> tuple[str, list[Any]]:
    """The votes of one comparison (correlated on c.id): clinicians' and external raters' ratings, and the
    judges' judgments when they count. Each vote is [criterion key, rater key, is_judge, value, flag]."""
    rater_key = "rt.kind || ':' || rt.label"
    ratings = f"""
        SELECT cr.key AS criterion, {rater_key} AS rater, false AS is_judge, r.value AS value,
               a.both_unacceptable AS flagged
        FROM {_t(Assignment)} a
        JOIN {_t(Rating)} r ON r.assignment_id = a.id
        JOIN {_t(Rater)} rt ON rt.id = a.rater_id
        JOIN {_t(Criterion)} cr ON cr.id = r.criterion_id
        WHERE a.comparison_id = c.id AND a.status = %s AND a.purpose IN ({", ".join(["%s"] * len(REPORTED_PURPOSES))})
          AND r.criterion_id IN ({", ".join(["%s"] * len(query.criterion_ids))})"""  # noqa: S608 (table names and placeholders only)
    params: list[Any] = [Assignment.Status.SUBMITTED, *REPORTED_PURPOSES, *query.criterion_ids]
    if query.submitted_before is not None:
        ratings += " AND a.submitted_at < %s"
        params.append(query.submitted_before)
    if not query.include_judges:
        return ratings, params
    judgments = f"""
        SELECT cr.key, {rater_key}, true, j.value, j.both_unacceptable
        FROM {_t(Judgment)} j
        JOIN {_t(Judge)} jd ON jd.id = j.judge_id
        JOIN {_t(Rater)} rt ON rt.id = jd.rater_id
        JOIN {_t(Criterion)} cr ON cr.id = j.criterion_id
        WHERE j.comparison_id = c.id AND j.criterion_id IN ({", ".join(["%s"] * len(query.criterion_ids))})"""  # noqa: S608 (table names and placeholders only)
    params += list(query.criterion_ids)
    if query.submitted_before is not None:
        judgments += " AND j.created_at < %s"
        params.append(query.submitted_before)
    return f"{ratings}\n        UNION ALL{judgments}", params


def _comparison_filter(query: ExportQuery, *, excluded_responses: bool = False) -> tuple[str, list[Any]]:
    where = "c.study_id = %s AND c.excluded = false"
    # A response excluded from exports takes its comparisons out; `excluded_responses` selects just those
    # instead, so the manifest can count them.
    keep = "NOT" if excluded_responses else ""
    where += f" AND {keep} (rf.excluded_from_exports = false AND rs.excluded_from_exports = false)"
    params: list[Any] = [query.study_id]
    if query.exclude_gold_items:
        where += " AND c.is_gold = false"
    if query.systems:
        marks = ", ".join(["%s"] * len(query.systems))
        where += f" AND sf.name IN ({marks}) AND ss.name IN ({marks})"
        params += [*query.systems, *query.systems]
    return where, params


def export_records_sql(query: ExportQuery, *, excluded_responses: bool = False) -> tuple[str, list[Any]]:
    """The one SELECT an export streams: a row per comparison with at least one vote, ordered by id.

    Columns: comparison id, prompt external id, prompt messages (JSON text), first response id, content,
    system name, second response id, content, system name, votes (JSON text). PostgreSQL aggregates the
    votes with a LATERAL json_agg; SQLite (the `make run` default) with a correlated json_group_array.
    `excluded_responses`: the comparisons left out because a response in them is excluded from exports.
    """
    votes, vote_params = _vote_sources(query)
    where, where_params = _comparison_filter(query, excluded_responses=excluded_responses)
    joins = f"""
FROM {_t(Comparison)} c
JOIN {_t(Prompt)} p ON p.id = c.prompt_id
JOIN {_t(Response)} rf ON rf.id = c.response_first_id
JOIN {_t(System)} sf ON sf.id = rf.system_id
JOIN {_t(Response)} rs ON rs.id = c.response_second_id
JOIN {_t(System)} ss ON ss.id = rs.system_id"""
    if connection.vendor == "postgresql":
        sql = f"""
SELECT c.id, p.external_id, p.messages::text, rf.id, rf.content, sf.name, rs.id, rs.content, ss.name, v.votes
{joins}
JOIN LATERAL (
    SELECT json_agg(json_build_array(x.criterion, x.rater, x.is_judge, x.value, x.flagged)
                    ORDER BY x.criterion, x.is_judge, x.rater)::text AS votes
    FROM ({votes}
    ) x
) v ON v.votes IS NOT NULL
WHERE {where}
ORDER BY c.id"""  # noqa: S608 (table names and placeholders only)
    else:
        sql = f"""
SELECT * FROM (
SELECT c.id, p.external_id, p.messages, rf.id, rf.content, sf.name, rs.id, rs.content, ss.name,
    (SELECT json_group_array(json_array(x.criterion, x.rater, x.is_judge, x.value, x.flagged))
     FROM ({votes}
     ) x) AS votes
{joins}
WHERE {where}
) WHERE votes <> '[]'
ORDER BY 1"""  # noqa: S608 (table names and placeholders only)
    # The vote subquery's parameters come before the WHERE clause's, in text order.
    return sql, [*vote_params, *where_params]


def _record(row: tuple[Any, ...], adjudications: dict[int, tuple[tuple[str, int], ...]]) -> ComparisonRecord:
    comparison_id, prompt_id, messages, first_id, first_content, first_system = row[:6]
    second_id, second_content, second_system, votes = row[6:]
    return ComparisonRecord(
        comparison_id=str(comparison_id),
        prompt_id=prompt_id,
        prompt=tuple(Message(role=m["role"], content=m["content"]) for m in json.loads(messages)),
        first=ResponseRecord(response_id=str(first_id), content=first_content, system=first_system),
        second=ResponseRecord(response_id=str(second_id), content=second_content, system=second_system),
        votes=tuple(
            VoteRecord(criterion=k, rater=r, is_judge=bool(j), value=v, both_unacceptable=bool(u))
            for k, r, j, v, u in sorted(json.loads(votes), key=lambda vote: (vote[0], bool(vote[2]), vote[1]))
        ),
        adjudications=adjudications.get(comparison_id, ()),
    )


class ExportReader:
    """Reads of one export inside one transaction; get one from `export_reader`."""

    def __init__(self, query: ExportQuery) -> None:
        self.query = query

    def comparisons_count(self) -> int:
        """How many records `records()` will yield (for the progress bar)."""
        sql, params = export_records_sql(self.query)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({sql}) counted", params)  # noqa: S608 (built from constants)
            return int(cursor.fetchone()[0])

    def excluded_response_comparisons_count(self) -> int:
        """Comparisons with votes that the export leaves out because a response is excluded from exports."""
        sql, params = export_records_sql(self.query, excluded_responses=True)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({sql}) counted", params)  # noqa: S608 (built from constants)
            return int(cursor.fetchone()[0])

    def _adjudications(self) -> QuerySet:
        adjudications = Adjudication.objects.filter(
            study_id=self.query.study_id, criterion_id__in=self.query.criterion_ids
        )
        if self.query.submitted_before is not None:
            adjudications = adjudications.filter(updated_at__lt=self.query.submitted_before)
        return adjudications

    def adjudications(self) -> dict[int, tuple[tuple[str, int], ...]]:
        """Comparison id -> ((criterion key, canonical value), ...) decided; empty unless the query uses them.
        At most one per disputed item, so this stays far smaller than the records."""
        if not self.query.use_adjudications:
            return {}
        decided: dict[int, list[tuple[str, int]]] = {}
        for comparison_id, key, value in (
            self._adjudications()
            .values_list("comparison_id", "criterion__key", "value")
            .iterator(chunk_size=CHUNK_ROWS)
        ):
            decided.setdefault(comparison_id, []).append((key, value))
        return {pk: tuple(sorted(pairs)) for pk, pairs in decided.items()}

    def data_as_of(self) -> datetime.datetime | None:
        """The newest change among the votes read: the latest rating edit or submission, or judgment.

        Used as the manifest's created_at, so the same data always gives the same bytes."""
        ratings = Rating.objects.filter(
            assignment__study_id=self.query.study_id,
            assignment__status=Assignment.Status.SUBMITTED,
            assignment__purpose__in=REPORTED_PURPOSES,
            assignment__comparison__excluded=False,
            criterion_id__in=self.query.criterion_ids,
        )
        if self.query.submitted_before is not None:
            ratings = ratings.filter(assignment__submitted_at__lt=self.query.submitted_before)
        times = [
            ratings.order_by("-updated_at").values_list("updated_at", flat=True).first(),
            ratings.order_by("-assignment__submitted_at").values_list("assignment__submitted_at", flat=True).first(),
        ]
        if self.query.include_judges:
            judgments = Judgment.objects.filter(
                comparison__study_id=self.query.study_id,
                comparison__excluded=False,
                criterion_id__in=self.query.criterion_ids,
            )
            if self.query.submitted_before is not None:
                judgments = judgments.filter(created_at__lt=self.query.submitted_before)
            times.append(judgments.order_by("-created_at").values_list("created_at", flat=True).first())
        if self.query.use_adjudications:
            times.append(self._adjudications().order_by("-updated_at").values_list("updated_at", flat=True).first())
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def prompt_strata(self, meta_key: str) -> dict[str, str]:
        """Prompt external id -> its `meta[meta_key]` as text ("" when missing): one entry per prompt."""
        prompts = Prompt.objects.filter(study_id=self.query.study_id).values_list("external_id", "meta")
        return {
            external_id: str((meta or {}).get(meta_key, ""))
            for external_id, meta in prompts.iterator(chunk_size=CHUNK_ROWS)
        }

    def records(self, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[ComparisonRecord]:
        """The records in comparison id order, fetched chunk_rows at a time from a server-side cursor."""
        adjudications = self.adjudications()
        sql, params = export_records_sql(self.query)
        # A named cursor: PostgreSQL sends chunk_rows rows per round trip, never the whole result.
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, params)
            # SQLite's connection belongs to this thread: fetch in line there.
            chunks = (
                _fetched_ahead(lambda: cursor.fetchmany(chunk_rows))
                if connection.vendor == "postgresql"
                else iter(lambda: cursor.fetchmany(chunk_rows), [])
            )
            for rows in chunks:
                for row in rows:
                    yield _record(row, adjudications)


def _fetched_ahead(fetch: Callable[[], list[Any]], depth: int = 2) -> Iterator[list[Any]]:
    """Yield fetch()'s chunks until an empty one, fetching the next chunk in a thread meanwhile.

    PostgreSQL computes a named cursor's rows only when asked, so fetching in line would leave the server
    idle while Python formats a chunk, and Python idle while the server computes the next: this overlaps
    the two. At most `depth` chunks wait in the queue, so memory stays flat. Only the thread touches the
    cursor until it has finished."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                rows = fetch()
                while not stop.is_set():
                    try:
                        chunks.put(rows, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if not rows:
                    return
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, which raises it in the export)
            chunks.put(_FetchFailed(error))

    thread = threading.Thread(target=produce, name="export-fetch", daemon=True)
    thread.start()
    try:
        while True:
            rows = chunks.get()
            if isinstance(rows, _FetchFailed):
                raise rows.error
            if not rows:
                return
            yield rows
    finally:
        # The export stopped early (an error or a cancel) or finished: let the thread end before the
        # cursor is closed.
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        thread.join()


@dataclass(frozen=True)
class _FetchFailed:
    error: BaseException


@contextmanager
def export_reader(query: ExportQuery) -> Iterator[ExportReader]:
    """An ExportReader whose reads share one transaction and, on PostgreSQL, one snapshot.

    Inside the transaction the named cursor is not WITH HOLD, so PostgreSQL streams it instead of
    materialising the whole result first."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield ExportReader(query)
