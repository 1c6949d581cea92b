"""Byte-identical zip archives of an export directory, and verification of an export against its manifest."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from annotations.exporting.export import MANIFEST_NAME
from annotations.exporting.writers import sha256_of_file

# The earliest time a zip can hold; any fixed value works, this one says "not a real time".
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


def write_zip(directory: str | os.PathLike[str], zip_path: str | os.PathLike[str]) -> str:
    """Zip every file under directory (paths relative to it, sorted, fixed times and modes) and
    return the zip's sha256. The same directory contents always give the same bytes."""
    root = Path(directory)
    paths = sorted(_relative_files(root))
    with zipfile.ZipFile(zip_path, "w") as archive:
        for relative in paths:
            source = root / relative
            info = zipfile.ZipInfo(relative, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode bits below mean the same everywhere
            info.external_attr = 0o644 << 16
            info.file_size = source.stat().st_size
            with open(source, "rb") as reader, archive.open(info, "w") as writer:
                while chunk := reader.read(_CHUNK):
                    writer.write(chunk)
    return sha256_of_file(Path(zip_path))


def _relative_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ValueError(f"refusing to archive a symbolic link: {path}")
            yield path.relative_to(root).as_posix()


def verify_export(path: str | os.PathLike[str]) -> list[str]:
    """Recompute every file's sha256 (and row count) and compare with the manifest.

    path: an export directory or a zip made by write_zip. Returns the problems found, one line
    each; an empty list means the export matches its manifest and holds no unlisted files.
    """
    source = Path(path)
    if source.is_dir():
        return _verify(_DirectorySource(source))
    with zipfile.ZipFile(source) as archive:
        return _verify(_ZipSource(archive))


class _DirectorySource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> set[str]:
        return set(_relative_files(self.root))

    def open(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")


class _ZipSource:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def names(self) -> set[str]:
        return {n for n in self.archive.namelist() if not n.endswith("/")}

    def open(self, name: str) -> IO[bytes]:
        return self.archive.open(name)


def _verify(source: _DirectorySource | _ZipSource) -> list[str]:
    names = source.names()
    if MANIFEST_NAME not in names:
        return [f"{MANIFEST_NAME} is missing"]
    with source.open(MANIFEST_NAME) as handle:
        try:
            manifest: dict[str, Any] = json.load(handle)
        except ValueError as error:
            return [f"{MANIFEST_NAME} is not valid JSON: {error}"]
    listed: dict[str, str] = manifest.get("files", {})
    problems: list[str] = []
    for name in sorted(names - set(listed) - {MANIFEST_NAME}):
        problems.append(f"{name}: present but not listed in the manifest")
    for name, expected in sorted(listed.items()):
        if name not in names:
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        digest = hashlib.sha256()
        newlines = 0
        with source.open(name) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                newlines += chunk.count(b"\n")
        if digest.hexdigest() != expected:
            problems.append(f"{name}: sha256 {digest.hexdigest()} does not match the manifest ({expected})")
            continue
        expected_rows = manifest.get("file_rows", {}).get(name)
        if expected_rows is None:
            continue
        if name.endswith(".jsonl"):
            actual_rows = newlines
        else:
            with source.open(name) as handle:
                # Zip members are seekable, so only the footer is read, not the whole file.
                actual_rows = pq.ParquetFile(handle).metadata.num_rows
        if actual_rows != expected_rows:
            problems.append(f"{name}: {actual_rows} rows, the manifest says {expected_rows}")
    return problems
