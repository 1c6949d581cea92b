"""The raw data download: every rating and judgment of a study as one long table, in CSV or Parquet.

Both formats are produced chunk by chunk from the selector's server-side cursors, so a study of any size is
streamed with bounded memory. Each download is audited once, when it starts.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError

from annotations.csvsafe import csv_writer
from annotations.models import Study
from annotations.selectors_items import RAW_COLUMNS, raw_rows
from annotations.selectors_spans import SPAN_COLUMNS, raw_span_rows
from annotations.services.audit import audit_download

RAW_FORMATS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
# `ratings`: the long table of ratings and judgments; `spans`: one row per marked passage (docs/raw-data.md).
RAW_KINDS = ("ratings", "spans")
PARQUET_BATCH = 10_000
CSV_FLUSH_ROWS = 500


def raw_data_filename(*, study: Study, file_format: str, kind: str = "ratings") -> str:
    return f"{study.slug}-{'spans' if kind == 'spans' else 'raw-data'}.{file_format}"


def raw_kind_check(kind: str) -> str:
    """The download's kind (empty means ratings), or a ValidationError naming the `kind` field."""
    kind = kind or "ratings"
    if kind not in RAW_KINDS:
        raise ValidationError({"kind": f"Choose one of: {', '.join(RAW_KINDS)}."})
    return kind


def raw_csv_chunks(rows: Iterable[tuple[Any, ...]], columns: tuple[str, ...] = RAW_COLUMNS) -> Iterator[bytes]:
    """CSV text (header first) in chunks of a few hundred lines, through the platform's formula-safe writer."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(columns)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % CSV_FLUSH_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


class _DrainableSink(io.RawIOBase):
    """A write-only file whose bytes are taken out after each Parquet row group, so nothing accumulates."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def _parquet_schema():
    import pyarrow as pa

    types = {
        "comparison_id": pa.int64(),
        "rubric_version": pa.int32(),
        "value": pa.int16(),
        "flagged_unacceptable": pa.bool_(),
        "is_gold": pa.bool_(),
        "active_seconds": pa.float64(),
        "total_seconds": pa.float64(),
        "revision": pa.int32(),
        "created_at": pa.timestamp("us", tz="UTC"),
        "submitted_at": pa.timestamp("us", tz="UTC"),
        "updated_at": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in RAW_COLUMNS])


def _span_parquet_schema():
    import pyarrow as pa

    types = {
        "comparison_id": pa.int64(),
        "start": pa.int64(),
        "end": pa.int64(),
        "created_at": pa.timestamp("us", tz="UTC"),
        "updated_at": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in SPAN_COLUMNS])


def raw_parquet_chunks(rows: Iterable[tuple[Any, ...]], schema=None) -> Iterator[bytes]:
    """A Parquet file written one row group of PARQUET_BATCH rows at a time, each yielded as it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = schema if schema is not None else _parquet_schema()
    sink = _DrainableSink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    batch: list[tuple[Any, ...]] = []

    def flush() -> bytes:
        columns = list(zip(*batch, strict=True)) if batch else [[] for _ in schema]
        writer.write_table(
            pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)
        )
        batch.clear()
        return sink.drain()

    for row in rows:
        batch.append(row)
        if len(batch) >= PARQUET_BATCH:
            yield flush()
    if batch:
        yield flush()
    writer.close()
    yield sink.drain()


def raw_data_stream(
    *,
    study: Study,
    file_format: str,
    actor: AbstractBaseUser | AnonymousUser | None,
    via: str,
    kind: str = "ratings",
) -> Iterator[bytes]:
    """The raw table of `study` as chunks of `file_format`, audited once (now, before the first byte)."""
    if file_format not in RAW_FORMATS:
        raise ValueError(f"Unknown raw data format {file_format!r}: use csv or parquet.")
    kind = raw_kind_check(kind)
    if kind == "spans":
        audit_download(actor=actor, kind=f"spans_{file_format}", study=study, obj=study, data={"via": via})
        spans = raw_span_rows(study=study)
        if file_format == "csv":
            return raw_csv_chunks(spans, SPAN_COLUMNS)
        return raw_parquet_chunks(spans, _span_parquet_schema())
    audit_download(actor=actor, kind=f"raw_{file_format}", study=study, obj=study, data={"via": via})
    rows = raw_rows(study=study)
    return raw_csv_chunks(rows) if file_format == "csv" else raw_parquet_chunks(rows)
