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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pandera.errors import SchemaError, SchemaErrors

#: failures listed in a message before it says "and N more"
MAX_LISTED = 20
#: text per chunk of a streamed read (``CsvChunks``): about 15,000 rows of a Zooniverse classification export
CHUNK_BYTES = 1 << 25
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


class RecordCheck:
    """The rules every record of a CSV is held to against its header, one record at a time, so that a file of
    any size is checked in one pass.

    Trailing cells empty in every row (a spreadsheet's trailing comma, with or without an empty header cell
    above them) are not columns; a column without a name that holds values, and any other row longer or shorter
    than the header's named columns, are errors, raised together by ``raise_errors`` (unnamed columns first);
    a header naming a column twice is refused at once.
    """

    def __init__(self, header: Sequence[str], source: str) -> None:
        self.header = list(header)
        self.source = source
        named = [c for c, name in enumerate(self.header) if name.strip()]
        #: the columns a row has: the header up to its last named column
        self.width = max(named[-1] + 1 if named else 1, 1)
        names = [name.strip() for name in self.header[: self.width]]
        repeated = sorted({name for name in names if name and names.count(name) > 1})
        if repeated:  # pandas would rename the second one (``candidate_id.1``) and read both
            at = {name: ", ".join(str(c + 1) for c, other in enumerate(names) if other == name) for name in repeated}
            where = "; ".join(f"{name!r} in columns {columns}" for name, columns in at.items())
            raise CsvError(f"{source}: line 1 names a column twice ({where}); give each column one name")
        self.unnamed: dict[int, list[int]] = {}  # column without a name -> lines where it holds a value
        self.long: list[int] = []
        self.short: list[int] = []

    def check(self, line: int, record: Sequence[str]) -> None:
        """Note what is wrong with one non-blank record (its first physical line ``line``)."""
        for column, cell in enumerate(record[: len(self.header)]):
            if cell.strip() and not self.header[column].strip():
                self.unnamed.setdefault(column, []).append(line)
        if any(cell.strip() for cell in record[len(self.header):]):
            self.long.append(line)
        elif len(record) < self.width and any(cell.strip() for cell in record):
            self.short.append(line)

    def raise_errors(self) -> None:
        for column, filled in sorted(self.unnamed.items()):
            raise CsvError(f"{self.source}: column {column + 1} has no name in the header but holds values at "
                           f"{listed([f'line {line}' for line in filled])}")
        for found, what in ((self.long, "more"), (self.short, "fewer")):
            if found:
                where = listed([f"line {line}" for line in found])
                hint = " (a cell holding a comma must be quoted)" if what == "more" else ""
                raise CsvError(f"{self.source}: {where} {'have' if len(found) > 1 else 'has'} {what} cells than the "
                               f"header's {self.width} columns{hint}")


def records(stream: Iterable[str], keep_blank: bool) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record of a text stream opened with ``newline=""``, with its first physical line; blank records
    (no cell holding anything) left out unless ``keep_blank``, and never before the header."""
    reader = csv.reader(stream)
    end = 0
    header_seen = False
    for record in reader:
        start, end = end + 1, reader.line_num
        blank = not any(cell.strip() for cell in record)
        if blank and (not header_seen or not keep_blank):
            continue
        header_seen = True
        yield start, record


def structure(text: str, source: str, keep_blank: bool) -> tuple[int, list[int]]:
    """Check every record has the header's number of cells; return the columns to keep and each row's line."""
    found = records(io.StringIO(text, newline=""), keep_blank)
    _, header = next(found)  # the caller refused a file of blanks
    check = RecordCheck(header, source)
    lines = []
    for line, record in found:
        check.check(line, record)
        lines.append(line)
    check.raise_errors()
    return check.width, lines


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
        raise not_utf8(f"{what} {path}", raw[: err.start].count(b"\n") + 1, err) from None
    check_delimiter(text.splitlines()[0], f"{what} {path}")
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


def not_utf8(source: str, line: int, err: UnicodeDecodeError) -> CsvError:
    return CsvError(f"{source}: line {line} is not UTF-8 text ({err.reason}); save the file as UTF-8")


def check_delimiter(header: str, source: str) -> None:
    """Refuse a header whose columns are separated by something other than commas."""
    if "," not in header:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if delimiter in header:
                raise CsvError(f"{source}: columns are separated by {name}, expected commas")


def has_line_break(column: pyarrow.Array) -> bool:
    """Whether any cell of a string column may hold a line break: a look at its character buffer (a few
    milliseconds for 64 MB), before counting them cell by cell."""
    data = column.buffers()[2]
    return data is not None and bool(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")))


class Irregular(Exception):
    """The fast reader met what only the careful one reads or reports exactly (internal to ``CsvChunks``)."""


class CsvChunks:
    """A CSV read in one pass and in bounded memory: chunks of about ``chunk_bytes`` of text, each a DataFrame
    of text cells (an empty cell is missing; a user called "NA" stays), default-indexed from 0, with
    ``attrs[LINES]`` its rows' file lines, validated with ``schema``.

    Made for Zooniverse exports of millions of rows. The same rules and messages as ``read_csv`` (UTF-8, BOM,
    commas, cells per row, spreadsheets' trailing commas, blank rows, quoted cells spanning lines counted as the
    lines an editor shows). pyarrow's streaming CSV reader does the work; a file it cannot read as is (ragged
    rows, another encoding, a header over several lines) is read or refused by the csv module's reader from
    where the fast one stopped, so every file gets the careful reader's exact answer.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pa.DataFrameSchema | None = None, *,
                 what: str = "CSV", allow_no_rows: bool = False, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = Path(path)
        self.source = f"{what} {self.path}"
        self.schema = schema
        self.allow_no_rows = allow_no_rows
        self.chunk_bytes = int(chunk_bytes)
        if not self.path.is_file():
            raise CsvError(f"{self.source}: no such file")
        self.size = self.path.stat().st_size
        self.header, self.extra, self.regular = self.read_header()
        #: the columns of every chunk: the header's, up to its last named one (a name given twice is refused here)
        self.columns: list[str] = self.header[: RecordCheck(self.header, self.source).width]
        self.rows = 0  # rows yielded so far

    def read_header(self) -> tuple[list[str], int, bool]:
        """The header; how many unnamed cells each data row adds (a trailing comma on data rows only); whether
        the fast reader can read the file (header on the first line, one line long)."""
        with open(self.path, "rb") as raw:
            first = raw.readline()
            blank_lines = 0
            while first and not first.strip():
                blank_lines, first = blank_lines + 1, raw.readline()
        if not first:
            raise CsvError(f"{self.source}: the file is empty")
        try:
            text = first.decode("utf-8-sig" if not blank_lines else "utf-8")
        except UnicodeDecodeError as err:
            raise not_utf8(self.source, blank_lines + 1, err) from None
        check_delimiter(text, self.source)
        with open(self.path, encoding="utf-8-sig", newline="") as stream:
            found = records(stream, keep_blank=False)
            try:
                (header_line, header), first_row = next(found), next(found, None)
            except UnicodeDecodeError:  # in the first data row: the careful reader says where
                return next(csv.reader([text])), 0, False
        extra = 1 if first_row is not None and len(first_row[1]) == len(header) + 1 and not first_row[1][-1] else 0
        return header, extra, header_line == 1 and text.endswith(("\n", "\r")) and first.count(b'"') % 2 == 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        self.rows = 0
        careful = not self.regular
        if not careful:
            try:
                for frame in self.fast():
                    yield self.finish(frame)
            except Irregular:
                careful = True
        if careful:
            for frame in self.careful(skip=self.rows):
                yield self.finish(frame)
        if self.rows == 0 and not self.allow_no_rows:
            raise CsvError(f"{self.source}: the file has a header but no rows")

    def finish(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.rows += len(frame)
        return validate(frame, self.schema, source=self.source) if self.schema is not None else frame

    def fast(self) -> Iterator[pd.DataFrame]:
        """pyarrow's reader; ``Irregular`` at the first thing it cannot read exactly."""
        width = len(self.header) + self.extra
        names = [f"c{i}" for i in range(width)]
        invalid: list[Any] = []

        def note(row: Any) -> str:
            invalid.append(row)
            return "skip"

        try:
            reader = pacsv.open_csv(
                self.path,
                # one thread: on a shared machine the reader's own threads only contend with the work on each chunk
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=self.chunk_bytes,
                                               use_threads=False),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                                 invalid_row_handler=note),
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pyarrow.string()),
                                                     null_values=[""], strings_can_be_null=True))
        except pyarrow.ArrowInvalid:
            raise Irregular from None
        named = self.columns
        line = 2  # of the next row
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                batch = None
            except pyarrow.ArrowInvalid:  # e.g. a cell that is not UTF-8
                raise Irregular from None
            if invalid:
                raise Irregular
            if batch is None:
                return
            # a row starts after the lines of the rows before it, quoted cells spanning lines included
            breaks = np.zeros(batch.num_rows, dtype=np.int64)
            for column in batch.columns:
                if has_line_break(column):
                    breaks += pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy(zero_copy_only=False)
            starts = line + np.arange(batch.num_rows) + np.cumsum(breaks) - breaks
            line += batch.num_rows + int(breaks.sum())
            if any(batch.column(c).null_count < batch.num_rows for c in range(len(named), width)):
                raise Irregular  # an unnamed column holding values
            frame = batch.to_pandas().iloc[:, : len(named)]
            frame.columns = named
            filled = frame.notna().any(axis=1).to_numpy()
            yield self.framed(frame if filled.all() else frame[filled], starts[filled])

    def careful(self, skip: int = 0) -> Iterator[pd.DataFrame]:
        """The csv module's reader, from the ``skip``-th row on: exact lines and messages for any file."""
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as stream:
                found = records(stream, keep_blank=False)
                next(found)
                check = RecordCheck(self.header, self.source)
                named = self.columns
                rows: list[list[str | None]] = []
                lines: list[int] = []
                size = 0
                for number, (line, record) in enumerate(found):
                    check.check(line, record)
                    if number < skip:
                        continue
                    cells = (record + [""] * len(named))[: len(named)]
                    rows.append([cell if cell else None for cell in cells])
                    lines.append(line)
                    size += sum(map(len, record))
                    if size >= self.chunk_bytes:
                        check.raise_errors()
                        yield self.framed(pd.DataFrame(rows, columns=named), lines)
                        rows, lines, size = [], [], 0
                check.raise_errors()
                if rows:
                    yield self.framed(pd.DataFrame(rows, columns=named), lines)
        except UnicodeDecodeError:
            raise self.undecodable() from None

    def framed(self, frame: pd.DataFrame, lines: Sequence[int]) -> pd.DataFrame:
        """Text columns of one dtype whichever reader made them, default index, file lines (an array: pandas
        deep-copies ``attrs`` at every operation, which a list of ints makes slow)."""
        frame = frame.astype("str").reset_index(drop=True)
        frame.attrs[LINES] = np.asarray(lines, dtype=np.int64)
        return frame

    def undecodable(self) -> CsvError:
        """The error naming the first line that is not UTF-8 (a line ends at a byte no character contains)."""
        with open(self.path, "rb") as raw:
            for number, line in enumerate(raw, start=1):
                try:
                    line.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    return not_utf8(self.source, number, err)
        return CsvError(f"{self.source}: not a well-formed CSV")


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
