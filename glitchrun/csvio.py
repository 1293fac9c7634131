"""Reading and writing every CSV that enters or leaves glitchrun, through a pandera schema.

One place turns the ways a CSV goes wrong (missing file, empty file, BOM, another encoding, another
delimiter, schema failures) into one ``CsvError`` that names the file, the rows (as 1-based line numbers
of the file, header = line 1) and the columns, so a user can open the file and fix it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

#: failures listed in a message before it says "and N more"
MAX_LISTED = 20


class CsvError(ValueError):
    """A CSV that glitchrun cannot use; the message says which file, rows and columns, and why."""


def file_line(index: Any) -> str:
    """The file line of a default-indexed row (the header is line 1)."""
    try:
        return f"line {int(index) + 2}"
    except (TypeError, ValueError):
        return f"row {index!r}"


def read_csv(path: str | os.PathLike[str], schema: pa.DataFrameSchema | None = None, *, what: str = "CSV",
             **read_kwargs: Any) -> pd.DataFrame:
    """Read ``path`` (UTF-8, BOM tolerated) and validate it with ``schema``; raise ``CsvError`` if unusable.

    Rows keep pandas' default index, so errors can name file lines; ``what`` says in messages which kind
    of CSV was expected (e.g. "manifest").
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
        frame = pd.read_csv(path, encoding="utf-8-sig", **read_kwargs)
    except (pd.errors.ParserError, csv.Error) as err:
        raise CsvError(f"{what} {path}: not a well-formed CSV: {err}") from None
    return validate(frame, schema, source=f"{what} {path}") if schema is not None else frame


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema, *, source: str) -> pd.DataFrame:
    """``schema.validate`` with every failure collected and reported as one ``CsvError``."""
    try:
        return schema.validate(frame, lazy=True)
    except SchemaErrors as err:
        raise CsvError(f"{source}: {describe_failures(err.failure_cases)}") from None
    except SchemaError as err:  # non-lazy failures, e.g. a dataframe-level check
        raise CsvError(f"{source}: {err}") from None


def describe_failures(cases: pd.DataFrame) -> str:
    """Summarise pandera's failure-case table: one line per (column, check) with the file lines."""
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
        where = [file_line(i) for i in group["index"] if i is not None]
        text = f"column {column!r} fails {check}" if column else f"table fails {check}"
        if where:
            shown = ", ".join(where[:MAX_LISTED])
            more = f" and {len(where) - MAX_LISTED} more" if len(where) > MAX_LISTED else ""
            text += f" at {shown}{more}"
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
