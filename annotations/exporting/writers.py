"""Deterministic row writers: the same rows in the same order give byte-identical files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_ROW_GROUP_ROWS = 1000
_HASH_CHUNK = 1 << 20

# Fixed Parquet writer options: every option that could vary by default or by version is pinned.
# pyarrow writes no timestamps; "created_by" names the pyarrow version, so pin pyarrow for identical bytes.
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "data_page_version": "1.0",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "store_schema": True,
}


def dumps_jsonl_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class RowWriter(Protocol):
    path: Path
    rows: int

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> str:
        """Finish the file and return its sha256."""
        ...


class JsonlRowWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._digest = hashlib.sha256()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "wb")

    def write(self, row: dict[str, Any]) -> None:
        line = dumps_jsonl_line(row)
        self._handle.write(line)
        self._digest.update(line)
        self.rows += 1

    def close(self) -> str:
        self._handle.close()
        return self._digest.hexdigest()


class ParquetRowWriter:
    """Writes a row group every row_group_rows rows, so memory stays bounded whatever the file size.

    Rows wait as Python dicts only in small batches (BATCH_ROWS) and are then held as compact Arrow
    record batches until the row group is written: Python row dicts cost several times their bytes.
    """

    BATCH_ROWS = 64

    def __init__(self, path: Path, schema: pa.Schema, *, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> None:
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1; got {row_group_rows}")
        self.path = path
        self.rows = 0
        self._schema = schema
        self._row_group_rows = row_group_rows
        self._pending_rows: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self._batched_rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(str(path), schema, **PARQUET_OPTIONS)

    def write(self, row: dict[str, Any]) -> None:
        self._pending_rows.append(row)
        self.rows += 1
        if (
            len(self._pending_rows) >= self.BATCH_ROWS
            or self._batched_rows + len(self._pending_rows) >= self._row_group_rows
        ):
            self._convert_pending()
        if self._batched_rows >= self._row_group_rows:
            self._write_row_group()

    def _convert_pending(self) -> None:
        if self._pending_rows:
            self._batches.append(pa.RecordBatch.from_pylist(self._pending_rows, schema=self._schema))
            self._batched_rows += len(self._pending_rows)
            self._pending_rows = []

    def _write_row_group(self) -> None:
        if self._batched_rows:
            table = pa.Table.from_batches(self._batches, schema=self._schema)
            self._writer.write_table(table, row_group_size=self._batched_rows)
            self._batches = []
            self._batched_rows = 0

    def close(self) -> str:
        self._convert_pending()
        self._write_row_group()
        self._writer.close()
        return sha256_of_file(self.path)


def write_json_file(path: Path, data: Any) -> None:
    """Deterministic pretty JSON (sorted keys, UTF-8, trailing newline)."""
    path.write_bytes((json.dumps(data, sort_keys=True, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
