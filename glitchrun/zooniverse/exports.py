"""Zooniverse data exports: asking for them, waiting for them, downloading and validating them.

The export CSVs are Zooniverse's own formats (classification, subject and workflow exports); the pandera
schemas here describe their columns so that the download job and the ingest jobs read them through one
door: ``export_chunks`` streams an export of any size in validated chunks (every cell as text, only an empty
cell missing, so a user called "NA" stays; JSON cells checked for their brackets), ``parse_cells`` parses a
chunk's JSON cells into plain objects, and ``read_classification_export`` / ``read_subject_export`` return a
whole small export so parsed, timestamps as UTC datetimes. A download that does not pass is never left under
a good file's name.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pandera.pandas as pa
import requests
from panoptes_client import Project, Workflow
from panoptes_client.panoptes import PanoptesAPIException
from tqdm import tqdm

from glitchrun.csvio import CHUNK_BYTES, LINES, CsvChunks, CsvError, file_line, listed, validate
from glitchrun.zooniverse.resources import resolve_project

log = logging.getLogger(__name__)

EXPORT_TYPES = ("classifications", "subjects", "workflows")
READY_STATES = ("ready", "finished")
#: Zooniverse generates at most one export per resource and export type in this many seconds
#: (``config/initializers/rate_limit_dump_worker.rb``: ``DUMP_CONGESTION_OPTS_INTERVAL``, max 1 per interval)
EXPORT_INTERVAL = 86400.0
TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$"
CHUNK = 1 << 16


# -- schemas ---------------------------------------------------------------------------------------
def json_shaped(kind: type) -> pa.Check:
    """Every cell is the text of a JSON object (``dict``) or array (``list``): its brackets, checked on every row
    of a file of millions at the speed of a string comparison; ``parse_json`` parses the cells a reader uses
    and names the lines of those that are not JSON, in the same words."""
    first, last = ("{", "}") if kind is dict else ("[", "]")

    def bracketed(cells: pd.Series) -> pd.Series:
        stripped = cells.str.strip()
        return stripped.str.startswith(first) & stripped.str.endswith(last)

    return pa.Check(bracketed, error=json_error(kind))


def loads(text: str | bytes) -> Any:
    """JSON text as plain Python objects: orjson (twice the json module's speed on the cells of an export of
    millions of rows), the json module for what only it reads (NaN, Infinity)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def json_error(kind: type) -> str:
    return f"is not a JSON {'object' if kind is dict else 'array'}"


def parse_json(cells: pd.Series, kind: type, column: str, source: str, lines: Sequence[int] | None = None
               ) -> pd.Series:
    """The cells parsed into plain Python objects (each distinct text once; rows with equal text share one
    object: read it, do not change it). Raises ``CsvError`` naming the lines whose cell is not JSON of ``kind``."""
    codes, parsed = parse_json_codes(cells, kind, column, source, lines)
    return pd.Series(parsed[codes], index=cells.index, name=cells.name)


def parse_json_codes(cells: pd.Series, kind: type, column: str, source: str, lines: Sequence[int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``parse_json`` as each row's code and the distinct texts' objects (code -1, a missing cell: None)."""
    codes, texts = pd.factorize(cells, use_na_sentinel=True)
    parsed = np.empty(len(texts) + 1, dtype=object)  # the last slot: a missing cell
    bad = []
    for code, text in enumerate(texts):
        try:
            parsed[code] = loads(text)
        except ValueError:
            parsed[code] = None
        if not isinstance(parsed[code], kind):
            bad.append(code)
    if bad:
        where = [file_line(row, lines) for row in cells.index[np.isin(codes, bad)]]
        raise CsvError(f"{source}: column {column!r} fails {json_error(kind)} at {listed(where)}")
    return codes, parsed


def integer(nullable: bool = False, **kwargs: Any) -> pa.Column:
    return pa.Column("Int64", coerce=True, nullable=nullable, **kwargs)


def text(nullable: bool = False, *checks: pa.Check) -> pa.Column:
    return pa.Column(str, checks=list(checks), nullable=nullable)


def timestamp(nullable: bool = False) -> pa.Column:
    return text(nullable, pa.Check.str_matches(TIMESTAMP, error="is not a 'YYYY-MM-DD HH:MM:SS UTC' time"))


def boolean(nullable: bool = True) -> pa.Column:
    return text(nullable, pa.Check.isin(["true", "false"], error="is not true/false"))


def json_column(kind: type) -> pa.Column:
    return text(False, json_shaped(kind))


CLASSIFICATION_EXPORT = pa.DataFrameSchema(
    {
        "classification_id": integer(unique=True),
        "user_name": text(),
        "user_id": integer(nullable=True),
        "user_ip": text(True),
        "workflow_id": integer(),
        "workflow_name": text(True),
        "workflow_version": text(False, pa.Check.str_matches(r"^\d+\.\d+$", error="is not 'major.minor'")),
        "created_at": timestamp(),
        "gold_standard": boolean(),
        "expert": text(True),
        "metadata": json_column(dict),
        "annotations": json_column(list),
        "subject_data": json_column(dict),
        "subject_ids": text(False, pa.Check.str_matches(r"^\d+(;\d+)*$", error="is not ids joined by ';'")),
    },
    name="classification export",
)

RETIREMENT_REASONS = ["classification_count", "flagged", "nothing_here", "consensus", "other", "human"]

SUBJECT_EXPORT = pa.DataFrameSchema(
    {
        "subject_id": integer(),
        "project_id": integer(),
        "workflow_id": integer(nullable=True),
        "subject_set_id": integer(),
        "metadata": json_column(dict),
        "locations": json_column(dict),
        "classifications_count": integer(checks=pa.Check.ge(0)),
        "retired_at": timestamp(nullable=True),
        "retirement_reason": text(True, pa.Check.isin(RETIREMENT_REASONS, error="is not a retirement reason")),
        "created_at": timestamp(),
        "updated_at": timestamp(),
    },
    name="subject export",
)

WORKFLOW_EXPORT = pa.DataFrameSchema(
    {
        "workflow_id": integer(),
        "display_name": text(True),
        "version": integer(),
        "minor_version": integer(),
        "active": boolean(),
        "classifications_count": integer(nullable=True),
        "primary_language": text(True),
        "first_task": text(True),
        "tasks": json_column(dict),
        "retirement": json_column(dict),
    },
    name="workflow export",
)


@dataclass(frozen=True)
class ExportFormat:
    """One export type's schema and which of its text columns hold JSON (objects unless ``arrays``), times and
    booleans."""

    schema: pa.DataFrameSchema
    json: tuple[str, ...]
    times: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    arrays: tuple[str, ...] = ()

    @property
    def kinds(self) -> dict[str, type]:
        return {column: list if column in self.arrays else dict for column in self.json}


FORMATS = {
    "classifications": ExportFormat(CLASSIFICATION_EXPORT, ("metadata", "annotations", "subject_data"),
                                    ("created_at",), ("gold_standard",), arrays=("annotations",)),
    "subjects": ExportFormat(SUBJECT_EXPORT, ("metadata", "locations"), ("retired_at", "created_at", "updated_at")),
    "workflows": ExportFormat(WORKFLOW_EXPORT, ("tasks", "retirement"), (), ("active",)),
}


def export_chunks(path: str | os.PathLike[str], export_type: str, chunk_bytes: int = CHUNK_BYTES) -> CsvChunks:
    """An export of this type read in chunks, each validated (text cells; JSON cells checked for their brackets):
    a file of millions of rows in one pass and bounded memory. ``parse_cells`` parses a chunk."""
    fmt = FORMATS[export_type]
    return CsvChunks(path, fmt.schema, what=str(fmt.schema.name), allow_no_rows=True, chunk_bytes=chunk_bytes)


def parse_cells(frame: pd.DataFrame, export_type: str, source: str) -> pd.DataFrame:
    """A validated chunk with its JSON cells parsed, times as UTC datetimes and booleans as such."""
    fmt = FORMATS[export_type]
    frame = frame.copy()
    for column in fmt.json:
        frame[column] = parse_json(frame[column], fmt.kinds[column], column, source, frame.attrs.get(LINES))
    for column in fmt.times:
        frame[column] = pd.to_datetime(frame[column], format="%Y-%m-%d %H:%M:%S UTC", utc=True)
    for column in fmt.booleans:
        frame[column] = frame[column].map({"true": True, "false": False}).astype("boolean")
    return frame


def read_export(path: str | os.PathLike[str], export_type: str, chunk_bytes: int = CHUNK_BYTES) -> pd.DataFrame:
    """Read and validate a whole export of this type; JSON cells parsed, times as UTC datetimes, booleans as such.

    Raises ``CsvError`` naming the file, lines and columns that do not fit Zooniverse's format. For a file too
    large to hold, read ``export_chunks`` one at a time.
    """
    chunks = export_chunks(path, export_type, chunk_bytes)
    frames = [parse_cells(chunk, export_type, chunks.source) for chunk in chunks]
    if not frames:  # an export made before anything was classified: its columns, no rows
        empty = validate(pd.DataFrame(columns=chunks.columns, dtype="str"), FORMATS[export_type].schema,
                         source=chunks.source)
        return parse_cells(empty, export_type, chunks.source)
    lines = np.concatenate([chunk.attrs.pop(LINES) for chunk in frames])  # (pandas compares attrs when it joins)
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs[LINES] = lines
    return frame


def read_classification_export(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A Zooniverse classification export (project or workflow), validated and parsed."""
    return read_export(path, "classifications")


def read_subject_export(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A Zooniverse subject export, validated and parsed."""
    return read_export(path, "subjects")


# -- which exports of what ---------------------------------------------------------------------------
class StaleExportError(RuntimeError):
    """An export that is well-formed but older than the data it should hold."""


@dataclass(frozen=True)
class ExportTarget:
    """A project or a workflow: the two kinds of resource Zooniverse exports."""

    resource: Project | Workflow

    @property
    def kind(self) -> str:
        return "workflow" if isinstance(self.resource, Workflow) else "project"

    def __str__(self) -> str:
        return f"{self.kind} {self.resource.id} ({self.resource.display_name!r})"

    def file_name(self, export_type: str) -> str:
        return f"{self.kind}-{self.resource.id}_{export_type}.csv"

    def classifications_count(self) -> int:
        """The server's count of classifications now (re-read, since it moves while an export is made)."""
        return int(type(self.resource).find(self.resource.id).raw.get("classifications_count") or 0)


class ExportJob:
    """What the export jobs share: which exports of which project, or of which workflow.

    ``workflow_id`` selects that workflow's classification export; otherwise the project is ``project_id``
    or, by default, the campaign project found by its display name ``project_name``.
    """

    def __init__(self, backend: Any, run_dir: str | os.PathLike[str], exports: Sequence[str] = EXPORT_TYPES,
                 project_id: int | str | None = None, project_name: str | None = None,
                 workflow_id: int | str | None = None, export_interval: float = EXPORT_INTERVAL) -> None:
        self.backend = backend
        self.run_dir = Path(run_dir)
        self.exports = list(exports)
        self.project_id = project_id
        self.project_name = project_name
        self.workflow_id = workflow_id
        self.export_interval = float(export_interval)

    def check_config(self) -> None:
        """Reject an export list the target cannot have, before anything is asked of Zooniverse."""
        unknown = [e for e in self.exports if e not in EXPORT_TYPES]
        if unknown or not self.exports:
            raise ValueError(f"exports must be a non-empty list of {list(EXPORT_TYPES)}, got {self.exports}")
        if len(set(self.exports)) != len(self.exports):
            raise ValueError(f"exports lists a type twice: {self.exports}")
        if self.workflow_id and self.exports != ["classifications"]:
            raise ValueError(f"a workflow has only a classifications export; with job.workflow_id set job.exports=[classifications] "
                             f"(got {self.exports}), or drop job.workflow_id to export the project")

    def request(self, connection: Any, target: ExportTarget, export_type: str) -> dict | None:
        """Ask for one export (a repeated request replaces the one being made: safe to retry); within
        Zooniverse's rate limit nothing is sent, the log says so plainly and None is returned."""
        try:
            return connection.client.retry(partial(request_export, target, export_type, self.export_interval))
        except ExportRateLimited as err:
            log.warning("%s", err)
            return None

    def target(self, owner: str | None) -> ExportTarget:
        if self.workflow_id:
            try:
                return ExportTarget(Workflow.find(self.workflow_id))
            except PanoptesAPIException as err:
                raise LookupError(f"workflow {self.workflow_id} not found or not visible to you ({err})") from None
        return ExportTarget(resolve_project(self.project_id, self.project_name, owner))


# -- talking to Zooniverse ---------------------------------------------------------------------------


class ExportRateLimited(RuntimeError):
    """An export asked for within Zooniverse's rate limit: it would be accepted but never generated."""


def request_export(target: ExportTarget, export_type: str, interval: float = EXPORT_INTERVAL,
                   now: datetime | None = None) -> dict:
    """Ask Zooniverse to (re)generate an export; returns its medium (``state`` is usually ``creating``).

    Within ``interval`` seconds of the last generated export the real server answers 201 but cancels the
    job (``app/workers/concerns/rate_limit_dump_worker.rb``): the medium would stay ``creating`` and its
    finished file could no longer be told ready. Such a request is not sent; ``ExportRateLimited`` says
    when the next one can be, and that the current export is still there to download.
    """
    try:
        current = describe_export(target, export_type)
    except LookupError:
        current = None
    made = exported_at(current) if current is not None and media_state(current) in READY_STATES else None
    if made is not None:
        age = ((now or datetime.now(timezone.utc)) - made).total_seconds()
        if age < interval:
            after = made + timedelta(seconds=interval)
            raise ExportRateLimited(
                f"not requested: Zooniverse generates at most one {export_type} export of {target} per "
                f"{interval / 3600:g} h, and the current one was generated {age / 3600:.1f} h ago ({made:%Y-%m-%d %H:%M} "
                f"UTC). A request now would be accepted but never run (the export would stay 'creating'). The current "
                f"export is still available: glitchrun job=export_download job.generate=false; request a new one "
                f"after {after:%Y-%m-%d %H:%M} UTC")
    return target.resource.generate_export(export_type)["media"][0]


def describe_export(target: ExportTarget, export_type: str) -> dict:
    """The current medium of an export; ``LookupError`` if none was ever requested."""
    try:
        return target.resource.describe_export(export_type)["media"][0]
    except PanoptesAPIException as err:
        raise LookupError(f"no {export_type} export of {target} ({err}); request one with job=export_request, "
                          "or run job=export_download with job.generate=true") from None


def media_state(medium: dict) -> str:
    return str((medium.get("metadata") or {}).get("state", ""))


def wait_until_ready(target: ExportTarget, export_type: str, timeout: float, poll_interval: float,
                     clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll the export until it is ready (tqdm progress, a log line every 30 s); ``TimeoutError`` after ``timeout`` s."""
    start = clock()
    last_log = start
    with tqdm(total=round(timeout), unit="s", desc=f"{export_type} export", disable=None, leave=False) as bar:
        while True:
            medium = describe_export(target, export_type)
            state = media_state(medium)
            if state in READY_STATES:
                return medium
            elapsed = clock() - start
            if elapsed >= timeout:
                raise TimeoutError(
                    f"the {export_type} export of {target} is still {state!r} after {timeout:g} s; Zooniverse can take "
                    "hours for a large project: run job=export_download again later (job.generate=false), or raise job.timeout"
                )
            if clock() - last_log >= 30:
                log.info("still waiting for the %s export of %s (state %r, %.0f s)", export_type, target, state, elapsed)
                last_log = clock()
            bar.update(round(elapsed) - bar.n)
            time.sleep(min(poll_interval, max(timeout - elapsed, 0)))


def download(url: str, dest: Path, timeout: float = 300) -> int:
    """Stream ``url`` to ``dest`` in chunks (exports can be gigabytes); returns the bytes written.

    A body shorter than the announced Content-Length (a cut connection) raises ``OSError``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with requests.get(url, stream=True, timeout=(30, timeout)) as response:
        response.raise_for_status()
        written = 0
        with open(dest, "wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                written += len(chunk)
        expected = response.headers.get("Content-Length")
        if expected is not None and "Content-Encoding" not in response.headers and written != int(expected):
            raise OSError(f"download of {url} was cut short: {written} of {expected} bytes")
    return written


def exported_at(medium: dict) -> datetime | None:
    """When the export was generated (the medium's ``updated_at``, else ``created_at``)."""
    stamp = medium.get("updated_at") or medium.get("created_at")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def staleness(medium: dict, max_age: float | None, rows: int | None = None, classifications: int | None = None,
              now: datetime | None = None) -> str | None:
    """Why an export is stale, or None.

    Two tests: it was generated more than ``max_age`` seconds ago; or (classification exports) it holds
    fewer rows than the classifications Zooniverse has counted since, which can only be if newer ones
    are missing (a fresh export holds every counted classification, plus repeats the count leaves out).
    """
    when = exported_at(medium)
    if max_age is not None and when is not None:
        age = ((now or datetime.now(timezone.utc)) - when).total_seconds()
        if age > max_age:
            return f"it was generated {age / 3600:.1f} h ago ({when:%Y-%m-%d %H:%M} UTC), more than job.max_age={max_age:g} s"
    if rows is not None and classifications is not None and rows < classifications:
        return f"it holds {rows} classifications but Zooniverse has counted {classifications}: newer ones are missing"
    return None


def fetch_export(target: ExportTarget, export_type: str, medium: dict, out_dir: Path, max_age: float | None,
                 require_all_classifications: bool) -> Path:
    """Download a ready export to ``out_dir``, validate it and check it is fresh; returns the good file.

    The bytes go to ``*.part`` first. A malformed file ends as ``*.invalid.csv`` and a stale one as
    ``*.stale.csv``, each with an error saying why, so only a good export ever has the plain name.
    """
    final = out_dir / target.file_name(export_type)
    part = final.with_suffix(".part")
    size = download(medium["src"], part)
    log.info("downloaded the %s export of %s (%d bytes)", export_type, target, size)
    try:
        chunks = export_chunks(part, export_type)
        rows = sum(len(parse_cells(chunk, export_type, chunks.source)) for chunk in chunks)
    except CsvError as err:
        invalid = part.replace(final.with_suffix(".invalid.csv"))
        raise CsvError(f"the {export_type} export of {target} is malformed, kept as {invalid} for inspection: {err}") from None
    counted = target.classifications_count() if export_type == "classifications" and require_all_classifications else None
    reason = staleness(medium, max_age, rows, counted)
    if reason:
        stale = part.replace(final.with_suffix(".stale.csv"))
        raise StaleExportError(f"the {export_type} export of {target} is stale: {reason}. Kept as {stale}; "
                               "download with job.generate=true for a fresh one")
    part.replace(final)
    log.info("%s export of %s: %d rows, valid, written to %s", export_type, target, rows, final)
    return final
