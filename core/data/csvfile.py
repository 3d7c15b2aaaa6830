"""Reading a CSV a user gave: its delimiter, a header without duplicates, then the rows.

The header is read here, with the ``csv`` module, before pandas sees the file: pandas would
silently rename a second ``a`` column to ``a.1``, and would read a semicolon-separated file as a
single column.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidTable

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

SNIFF_CHARS = 64 * 1024  # the delimiter and the header are read from the start of the file
OTHER_DELIMITERS = ";\t|"  # tried only when commas give a single column
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "'|'"}


def read_csv_file(source: Path) -> tuple[pd.DataFrame, str]:
    """``(frame, delimiter)`` of the CSV ``source``, or ``InvalidTable`` saying what to fix.

    The delimiter is a comma unless the header has no comma and a semicolon, tab or ``|``
    splits every line the same way. Duplicate column names are refused, naming them.
    """
    import pandas as pd

    source = Path(source)
    if not source.is_file() or source.stat().st_size == 0:
        raise InvalidTable(f"{source.name} is empty or missing: upload a CSV with a header row.")
    sample = _head(source)
    delimiter = detect_delimiter(sample)
    header = first_row(sample, delimiter)
    if not header:
        raise InvalidTable(f"{source.name} has no columns: is it empty?")
    check_unique(header, source.name)
    if len(header) == 1 and any(d in header[0] for d in OTHER_DELIMITERS):
        raise InvalidTable(
            f"{source.name} reads as a single column {header[0][:60]!r}: its values seem "
            f"separated by something other than commas, and not consistently on every line. "
            f"Save it as a comma-separated CSV."
        )
    try:
        frame = pd.read_csv(source, sep=delimiter)
    except pd.errors.EmptyDataError:
        raise InvalidTable(f"{source.name} has no columns: is it empty?") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidTable(f"{source.name} is not a readable CSV file ({exc}).") from None
    if frame.empty:
        raise InvalidTable(f"{source.name} has a header but no rows.")
    if delimiter != ",":
        logger.info("Read %s as a %s-separated file", source.name, DELIMITER_NAMES[delimiter])
    return frame, delimiter


def detect_delimiter(sample: str) -> str:
    """``,`` unless the header has a single comma-separated field and csv.Sniffer finds one of
    ``;``, tab or ``|`` used consistently (decimal commas then stay inside the values)."""
    if len(first_row(sample, ",")) != 1:
        return ","
    lines = sample if len(sample) < SNIFF_CHARS else sample[: sample.rfind("\n") + 1] or sample
    try:
        found = csv.Sniffer().sniff(lines, delimiters=OTHER_DELIMITERS).delimiter
    except csv.Error:
        return ","
    return found if len(first_row(sample, found)) > 1 else ","


def first_row(sample: str, delimiter: str) -> list[str]:
    """The first non-blank row of ``sample`` (the header, as pandas reads it), split."""
    for row in csv.reader(io.StringIO(sample), delimiter=delimiter):
        if any(cell.strip() for cell in row):
            return row
    return []


def check_unique(header: list[str], label: str) -> None:
    """Refuse duplicate column names, naming each with its (1-based) positions."""
    positions: dict[str, list[int]] = {}
    for k, column in enumerate(header, start=1):
        positions.setdefault(column, []).append(k)
    repeated = {c: ks for c, ks in positions.items() if len(ks) > 1}
    if repeated:
        listed = ", ".join(
            f"{c!r} (columns {', '.join(map(str, ks))})" for c, ks in repeated.items()
        )
        raise InvalidTable(
            f"{label} has duplicate column names: {listed}. Give every column its own name."
        )


def _head(source: Path) -> str:
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
        with open(source, encoding="utf-8-sig", newline="") as handle:
            return handle.read(SNIFF_CHARS)
    except UnicodeDecodeError:
        raise InvalidTable(
            f"{source.name} is not a readable CSV file (not UTF-8 text): save it as UTF-8 CSV."
        ) from None
