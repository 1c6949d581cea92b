"""One guard against spreadsheet formula injection, for every CSV the platform writes.

Labels in a CSV come from outside (system, rater and judge names in imported files, usernames typed at the
login form); a cell that starts with = + - @ (or a tab or carriage return) runs as a formula when the file
is opened in a spreadsheet. Such text gets a leading apostrophe; numbers are written unchanged.
"""

import csv
from collections.abc import Iterable
from typing import IO, Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell that a spreadsheet shows as text: text starting like a formula is prefixed with an apostrophe."""
    if isinstance(value, str) and value[:1] in FORMULA_TRIGGERS:
        return "'" + value
    return value


class SafeCsvWriter:
    """csv.writer whose every text cell passes through csv_safe."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_safe(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream: IO[str]) -> SafeCsvWriter:
    """The platform's only way to write CSV."""
    return SafeCsvWriter(stream)
