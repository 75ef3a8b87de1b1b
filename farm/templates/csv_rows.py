"""Variable rows for a batch: from an uploaded CSV file, or typed into the dashboard's table.

CSV files come from spreadsheets, so this accepts what they write: UTF-8 with or without a BOM
(Excel's "CSV UTF-8"), UTF-16 with a BOM (Excel's "Unicode text", tab-separated), and comma,
semicolon (Excel in many European locales) or tab separators, told apart by the header row. The
first row names the columns; each later row is one variable row; blank rows are skipped.

Limits are checked as early as they can be: the size before decoding, the row count while reading
(a 100,000-row file is refused after reading one row past the limit, not after building renders).
Every problem raises InvalidInput("csv", ...) saying what to fix and, for a row, its line.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from farm.errors import InvalidInput

FIELD = "csv"
DELIMITERS = (",", ";", "\t")
NOT_TEXT = "not UTF-8 or UTF-16 text; save as 'CSV UTF-8'"


@dataclass(frozen=True)
class VariableRows:
    """Rows ready for a preview or a batch: every value is text, every row has every column."""

    columns: list[str]
    rows: list[dict[str, str]]
    # Where each row came from: its line in the file, or its index in the table as typed.
    sources: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "sources": self.sources}


def decode_csv_bytes(data: bytes) -> str:
    """The file's text; InvalidInput("csv") if it is neither UTF-8 nor UTF-16 with a BOM."""
    if data.startswith(codecs.BOM_UTF32_LE) or data.startswith(codecs.BOM_UTF32_BE):
        raise InvalidInput(FIELD, f"UTF-32 text is {NOT_TEXT}")
    try:
        if data.startswith(codecs.BOM_UTF8):
            text = data[len(codecs.BOM_UTF8):].decode("utf-8")
        elif data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
            text = data.decode("utf-16")  # the BOM says which byte order, and is dropped
        else:
            text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(FIELD, f"{NOT_TEXT} (byte {error.start} cannot be read)") from None
    if "\x00" in text:
        raise InvalidInput(FIELD, f"{NOT_TEXT} (it holds NUL characters: a binary file or UTF-16 without a BOM?)")
    return text


def _delimiter(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the earlier: "," first
    return best if counts[best] else ","


def parse_csv_rows(data: bytes, *, required: Sequence[str] = (), max_bytes: int, max_rows: int) -> VariableRows:
    """Read variable rows from CSV bytes; InvalidInput("csv") naming the problem.

    `required` columns (the template's declared variables) must all be in the header; other
    columns are kept (they show in the job's rows) but not used by the template.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(FIELD, "must be the uploaded file's bytes")
    if len(data) > max_bytes:
        raise InvalidInput(FIELD, f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    text = decode_csv_bytes(bytes(data))
    first_line = text.split("\n", 1)[0]
    if not text.strip():
        raise InvalidInput(FIELD, "the file is empty; its first row must name the columns")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line), strict=True)
    try:
        header = next(reader, None)
        columns = _header(header or [], required)
        rows: list[dict[str, str]] = []
        sources: list[int] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank rows, and the empty line some editors leave at the end
            if len(rows) == max_rows:
                raise InvalidInput(FIELD, f"more than {max_rows:,} rows; the limit is {max_rows:,} rows per job: "
                                          "split the file")
            if len(cells) != len(columns):
                raise InvalidInput(FIELD, f"line {reader.line_num} has {len(cells)} values; "
                                          f"the header names {len(columns)} columns")
            rows.append({name: cell.strip() for name, cell in zip(columns, cells)})
            sources.append(reader.line_num)
    except csv.Error as error:
        raise InvalidInput(FIELD, f"line {reader.line_num}: {error}") from None
    if not rows:
        raise InvalidInput(FIELD, "the file has a header row but no rows of values")
    return VariableRows(columns=columns, rows=rows, sources=sources)


def _header(cells: list[str], required: Sequence[str]) -> list[str]:
    columns = [cell.strip() for cell in cells]
    if not any(columns):
        raise InvalidInput(FIELD, "the first row must name the columns")
    for number, name in enumerate(columns, start=1):
        if not name:
            raise InvalidInput(FIELD, f"column {number} of the header row has no name")
        if columns.index(name) != number - 1:
            raise InvalidInput(FIELD, f"column '{name}' is named twice in the header row")
    missing = [name for name in required if name not in columns]
    if missing:
        raise InvalidInput(FIELD, f"missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
                                  f"(the header has: {', '.join(columns)})")
    return columns


def table_rows(rows: object, *, required: Sequence[str] = (), max_rows: int) -> VariableRows:
    """Rows typed into the dashboard's table (or sent to the API) as a list of mappings.

    Values become text (numbers are accepted); fully blank rows are skipped (a table's empty last
    row). Problems name the row as given and its column: "rows[3].product".
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise InvalidInput("rows", "must be a list of rows")
    columns: list[str] = list(required)
    kept: list[dict[str, str]] = []
    sources: list[int] = []
    for index, row in enumerate(rows):
        where = f"rows[{index}]"
        if not isinstance(row, dict):
            raise InvalidInput(where, "must be a mapping of column names to values")
        values: dict[str, str] = {}
        for name, value in row.items():
            if not isinstance(name, str) or not name.strip():
                raise InvalidInput(where, f"column name {name!r} is not text")
            if value is None:
                value = ""
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise InvalidInput(f"{where}.{name.strip()}", f"must be text, got {type(value).__name__}")
            values[name.strip()] = str(value).strip()
        if not any(values.values()):
            continue
        if len(kept) == max_rows:
            raise InvalidInput("rows", f"more than {max_rows:,} rows; the limit is {max_rows:,} rows per job")
        for name in required:
            if name not in values:
                raise InvalidInput(f"{where}.{name}", "is required by the template")
        for name in values:
            if name not in columns:
                columns.append(name)
        kept.append(values)
        sources.append(index)
    if not kept:
        raise InvalidInput("rows", "at least one row is required")
    return VariableRows(columns=columns, rows=kept, sources=sources)
