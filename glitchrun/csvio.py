"""Reading and writing every CSV that enters or leaves glitchrun, through a pandera schema.

One place turns the ways a CSV goes wrong (missing file, empty file, BOM, another encoding, another
delimiter, rows with more or fewer cells than the header, a header without rows, schema failures) into one
``CsvError`` that names the file, the rows (as the line numbers a text editor shows: header = line 1, a
quoted cell spanning lines counted as it is) and the columns, so a user can open the file and fix it.

Spreadsheets save two artefacts on purpose handled here: a trailing comma on every row (or only on the
data rows) makes a last column that is empty everywhere, which is dropped; anything else ragged is refused.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

#: failures listed in a message before it says "and N more"
MAX_LISTED = 20
#: ``frame.attrs`` key of the file line of each row read by ``read_csv`` (row i -> its first physical line)
LINES = "csv_lines"


class CsvError(ValueError):
    """A CSV that glitchrun cannot use; the message says which file, rows and columns, and why."""


def file_line(index: Any, lines: Sequence[int] | None = None) -> str:
    """The file line of a default-indexed row: from ``lines`` (a frame's ``attrs[LINES]``) when known, else
    counted as one line per row after the header (line 1)."""
    try:
        row = int(index)
    except (TypeError, ValueError):
        return f"row {index!r}"
    return f"line {lines[row]}" if lines is not None and 0 <= row < len(lines) else f"line {row + 2}"


def listed(items: Sequence[str]) -> str:
    """The first ``MAX_LISTED`` items, comma-separated, and how many more there are."""
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def structure(text: str, source: str, keep_blank: bool) -> tuple[int, list[int]]:
    """Check every record has the header's number of cells; return the columns to keep and each row's line.

    Trailing cells empty in every row (a spreadsheet's trailing comma, with or without an empty header
    cell above them) are not columns; any other row longer or shorter than the header is an error.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    end = 0
    for record in reader:
        start, end = end + 1, reader.line_num
        blank = not any(cell.strip() for cell in record)
        if header is None:
            header = None if blank else record
        elif not blank or keep_blank:
            rows.append((start, record))
    assert header is not None  # the caller refused a file of blanks
    width = len(header)
    while width > 1 and not header[width - 1].strip() and all(len(r) < width or not r[width - 1].strip()
                                                               for _, r in rows):
        width -= 1
    names = [name.strip() for name in header[:width]]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:  # pandas would rename the second one (``candidate_id.1``) and read both
        at = {name: ", ".join(str(c + 1) for c, other in enumerate(names) if other == name) for name in repeated}
        where = "; ".join(f"{name!r} in columns {columns}" for name, columns in at.items())
        raise CsvError(f"{source}: line 1 names a column twice ({where}); give each column one name")
    for column in [c for c, name in enumerate(header[:width]) if not name.strip()]:
        filled = [line for line, record in rows if column < len(record) and record[column].strip()]
        if filled:
            raise CsvError(f"{source}: column {column + 1} has no name in the header but holds values at "
                           f"{listed([f'line {line}' for line in filled])}")
    short = [f"line {line}" for line, record in rows if any(c.strip() for c in record) and len(record) < width]
    long = [f"line {line}" for line, record in rows if any(cell.strip() for cell in record[width:])]
    if long:
        raise CsvError(f"{source}: {listed(long)} {'have' if len(long) > 1 else 'has'} more cells than the header's "
                       f"{width} columns (a cell holding a comma must be quoted)")
    if short:
        raise CsvError(f"{source}: {listed(short)} {'have' if len(short) > 1 else 'has'} fewer cells than the "
                       f"header's {width} columns")
    return width, [line for line, _ in rows]


def read_csv(path: str | os.PathLike[str], schema: pa.DataFrameSchema | None = None, *, what: str = "CSV",
             allow_no_rows: bool = False, **read_kwargs: Any) -> pd.DataFrame:
    """Read ``path`` (UTF-8, BOM tolerated) and validate it with ``schema``; raise ``CsvError`` if unusable.

    Rows keep pandas' default index and ``frame.attrs[LINES]`` holds each row's file line, so errors name
    the lines an editor shows; ``what`` says in messages which kind of CSV was expected (e.g. "manifest").
    A header without rows is refused unless ``allow_no_rows`` (e.g. an export made before any classification).
    """
    path = Path(path)
    if not path.is_file():
        raise CsvError(f"{what} {path}: no such file")
    raw = path.read_bytes()
    if not raw.strip():
        raise CsvError(f"{what} {path}: the file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise CsvError(f"{what} {path}: line {line} is not UTF-8 text ({err.reason}); save the file as UTF-8") from None
    header = text.splitlines()[0]
    if "," not in header:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if delimiter in header:
                raise CsvError(f"{what} {path}: columns are separated by {name}, expected commas")
    try:
        width, lines = structure(text, f"{what} {path}", keep_blank=not read_kwargs.get("skip_blank_lines", True))
        frame = pd.read_csv(io.StringIO(text), usecols=range(width), **read_kwargs)
    except (pd.errors.ParserError, csv.Error) as err:
        raise CsvError(f"{what} {path}: not a well-formed CSV: {err}") from None
    if frame.empty and not allow_no_rows:
        raise CsvError(f"{what} {path}: the file has a header but no rows")
    if len(lines) == len(frame):  # else pandas skipped rows the scan kept (options such as comment=)
        frame.attrs[LINES] = lines
    return validate(frame, schema, source=f"{what} {path}") if schema is not None else frame


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema, *, source: str) -> pd.DataFrame:
    """``schema.validate`` with every failure collected and reported as one ``CsvError``."""
    try:
        return schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        raise CsvError(f"{source}: {describe_failures(err.failure_cases, frame.attrs.get(LINES))}") from None
    except SchemaError as err:  # non-lazy failures, e.g. a dataframe-level check
        raise CsvError(f"{source}: {err}") from None


def describe_failures(cases: pd.DataFrame, rows: Sequence[int] | None = None) -> str:
    """Summarise pandera's failure-case table: one line per (column, check) with the file lines (``rows``:
    each row's file line, when known)."""
    lines = []
    cases = cases.astype(object).where(cases.notna(), None)
    cases["column"] = cases["column"].fillna("")
    # a cell of the wrong type makes the column's other checks raise (a TypeError, no row), and one that
    # cannot be coerced also fails the dtype check: only the type failure at its line says what is wrong
    check = cases["check"].astype(str)
    typed = check.str.startswith(("coerce_dtype", "dtype"))
    wrong_type = cases["column"].isin(set(cases.loc[typed, "column"]))
    coerced = cases["column"].isin(set(cases.loc[check.str.startswith("coerce_dtype"), "column"]))
    cases = cases[~(wrong_type & ~typed & cases["index"].isna()) & ~(coerced & check.str.startswith("dtype"))]
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        values = [v for v in group["failure_case"] if v is not None]
        if check == "column_in_dataframe":
            lines.append("missing column " + ", ".join(repr(v) for v in values))
            continue
        where = [file_line(i, rows) for i in group["index"] if i is not None]
        text = f"column {column!r} fails {check}" if column else f"table fails {check}"
        if where:
            text += f" at {listed(where)}"
        if values:
            text += f" (values: {', '.join(repr(v) for v in values[:5])})"
        lines.append(text)
    return "; ".join(lines)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], schema: pa.DataFrameSchema | None = None,
              *, what: str = "CSV", index: bool = False) -> Path:
    """Validate ``frame`` with ``schema`` (when given), then write it; returns the path."""
    path = Path(path)
    if schema is not None:
        frame = validate(frame, schema, source=f"{what} to be written to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index)
    return path
