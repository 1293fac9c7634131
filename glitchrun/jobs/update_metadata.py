"""``job=update_metadata``: set subjects' metadata from a CSV, checked whole before anything is written.

Rows are keyed by ``subject_id`` or by a metadata field (``key_column: candidate_id``). The CSV must fit
the subject set as a whole (unique keys, every key a subject of the set, values of the right type) or
nothing is changed. Types: cells are text; a column listed in ``dtypes`` is parsed as that type, any
other column as the type the field's current values in the set have (all integers -> int, numbers ->
float, booleans -> bool, else str), so a numeric field stays numeric. A new field without a ``dtypes``
entry is stored as text.

Empty cells: in ``mode: merge`` (the default) an empty cell leaves that field as it is and the other
fields of the subject are kept; in ``mode: replace`` the metadata becomes exactly the row's non-empty
cells (an empty cell removes the field). The key column is itself a field when it is a metadata key; a
``subject_id`` column never is.

Only subjects whose metadata really changes are written, concurrently; their previous metadata is saved
to ``metadata_backup.json`` first. Each write re-reads the subject for its own ETag (a list's ETag is
refused by Zooniverse) and skips it as a conflict if someone changed it since the plan was made.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import requests
from panoptes_client import Panoptes, Subject
from panoptes_client.panoptes import PanoptesAPIException
from tqdm import tqdm

from glitchrun.csvio import CsvError, read_csv, validate, write_csv
from glitchrun.zooniverse.resources import (
    check_subject_set_choice,
    metadata_json,
    resolve_subject_set,
    set_subjects,
)
from glitchrun.zooniverse.uploader import KEY_FIELD, own_fields

log = logging.getLogger(__name__)

SUBJECT_ID = "subject_id"
MODES = ("merge", "replace")
STATUSES = ("unchanged", "dry-run", "written", "conflict", "failed")


def parse_int(cell: str) -> int:
    if not cell.strip().lstrip("+-").isdigit():
        raise ValueError(cell)
    return int(cell)


def parse_float(cell: str) -> float:
    value = float(cell)
    if not math.isfinite(value):  # JSON has no NaN or infinity
        raise ValueError(cell)
    return value


def parse_bool(cell: str) -> bool:
    return {"true": True, "false": False}[cell.strip().lower()]


#: dtype name -> (parser of a non-empty cell, what an error calls one value, and several)
DTYPES: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "str": (str, "text", "text"),
    "int": (parse_int, "an integer", "integers"),
    "float": (parse_float, "a finite number", "numbers"),
    "bool": (parse_bool, "true/false", "booleans"),
}


def infer_dtype(values: Collection[Any]) -> str:
    """The dtype a field's current values demand: integers stay integers, numbers numbers, booleans booleans."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "str"
    if kinds == {bool}:
        return "bool"
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "str"


def same_value(a: Any, b: Any) -> bool:
    """Equal as stored metadata: same JSON, or equal numbers (3 and 3.0). ``1 == True`` in Python, not here."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return (numbers and a == b) or metadata_json(a) == metadata_json(b)


def parses(parser: Callable[[str], Any], cell: str) -> bool:
    try:
        parser(cell)
    except (ValueError, KeyError):
        return False
    return True


def updates_schema(key_column: str, dtypes: Mapping[str, str], why: Mapping[str, str] | None = None,
                   keys: Collection[str] | None = None, ambiguous: Collection[str] = (), where: str = "",
                   locked: Mapping[str, pd.Series] | None = None) -> pa.DataFrameSchema:
    """The metadata CSV's schema (cells as text; an empty cell is ""), in two strengths.

    Without ``keys``: the key column is there, filled and unique, and the ``dtypes`` columns parse. With
    ``keys`` (the set's subjects by key) every key must be one of them and match only one subject, and a
    ``locked`` field (glitchrun's own, see ``own_fields``: each row's subject's current value, NA where it is
    not locked) must keep its value. ``why[field]`` says in errors where a column's type came from.
    """
    checks: dict[str, list[pa.Check]] = {key_column: [pa.Check.str_length(min_value=1, error="is empty")]}
    if key_column == SUBJECT_ID:
        checks[key_column].append(pa.Check.str_matches(r"^\d+$", error="is not a subject id"))
    if keys is not None:
        known, several = set(keys), set(ambiguous)
        checks[key_column].append(pa.Check(lambda s: s.isin(known) | (s == ""), error=f"is not a subject of {where}"))
        checks[key_column].append(pa.Check(lambda s: ~s.isin(several),
                                           error=f"matches several subjects of {where} (run job=dedupe first)"))
    for field, current in (locked or {}).items():
        checks.setdefault(field, []).append(pa.Check(
            lambda cell, now=current: (cell == "") | (cell == now.loc[cell.index]) | now.loc[cell.index].isna(),
            error="is the key glitchrun finds the subject by, which must not change"))
    for field, dtype in dtypes.items():
        parser, name, _ = DTYPES[dtype]
        reason = (why or {}).get(field, f"job.dtypes.{field}={dtype}")
        checks.setdefault(field, []).append(pa.Check(lambda cell, p=parser: cell == "" or parses(p, cell),
                                                     element_wise=True, error=f"is not {name} ({reason})"))
    columns = {field: pa.Column(str, field_checks, unique=field == key_column) for field, field_checks in checks.items()}
    return pa.DataFrameSchema(columns, name="metadata CSV")


def key_text(value: Any) -> str:
    """A metadata key value as a CSV cell would hold it."""
    return value if isinstance(value, str) else metadata_json(value)


def subjects_by_key(metadata: Mapping[str, dict], key_column: str) -> tuple[dict[str, str], set[str]]:
    """key -> subject id over the set, and the keys held by several subjects (which no row may name)."""
    if key_column == SUBJECT_ID:
        return {sid: sid for sid in metadata}, set()
    found: dict[str, str] = {}
    ambiguous = set()
    for sid, fields in metadata.items():
        if key_column in fields:
            key = key_text(fields[key_column])
            if key in found:
                ambiguous.add(key)
            found[key] = sid
    return found, ambiguous


def locked_values(updates: pd.DataFrame, key_column: str, subject_of: Mapping[str, str],
                  current: Mapping[str, dict]) -> dict[str, pd.Series]:
    """For each CSV column that is one of glitchrun's own fields of some row's subject, each row's current
    value as text (NA where the row's subject does not lock it, or the key matches no subject)."""
    locked: dict[str, pd.Series] = {}
    for field in (c for c in updates.columns if c != SUBJECT_ID):
        def value(key: str, field: str = field) -> str | None:
            metadata = current.get(subject_of.get(key, ""), {})
            return key_text(metadata[field]) if field in own_fields(metadata) else None

        values = updates[key_column].map(value)
        if values.notna().any():
            locked[field] = values
    return locked


def new_metadata(old: dict, given: dict, mode: str) -> dict:
    """``old`` updated by the row's non-empty cells; a field whose value is the same keeps its stored form,
    and glitchrun's own fields stay in ``replace`` mode too."""
    new = dict(old) if mode == "merge" else {field: old[field] for field in own_fields(old)}
    for field, value in given.items():
        new[field] = old[field] if field in old and same_value(old[field], value) else value
    return new


def changed_fields(old: dict, new: dict) -> list[str]:
    return [f for f in sorted(old.keys() | new.keys()) if f not in old or f not in new or not same_value(old[f], new[f])]


def plan_updates(updates: pd.DataFrame, key_column: str, subject_of: Mapping[str, str], current: Mapping[str, dict],
                 dtypes: Mapping[str, str], mode: str) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The diff (one row per changed field: subject_id, field, old, new as JSON) and the new metadata of
    every subject that changes, from a validated CSV."""
    fields = [c for c in updates.columns if c != SUBJECT_ID]
    diff = []
    changes = {}
    for row in updates.to_dict("records"):
        sid = subject_of[row[key_column]]
        old = current[sid]
        given = {f: DTYPES[dtypes[f]][0](row[f]) for f in fields if row[f] != ""}
        new = new_metadata(old, given, mode)
        for field in changed_fields(old, new):
            diff.append((sid, field, metadata_json(old[field]) if field in old else None,
                         metadata_json(new[field]) if field in new else None))
        if changed_fields(old, new):
            changes[sid] = new
    return pd.DataFrame(diff, columns=list(DIFF.columns)).astype(str), changes


DIFF = pa.DataFrameSchema(
    {
        SUBJECT_ID: pa.Column(str, pa.Check.str_matches(r"^\d+$")),
        "field": pa.Column(str),
        "old": pa.Column(str, nullable=True),  # JSON; empty = the field was absent
        "new": pa.Column(str, nullable=True),  # JSON; empty = the field is removed
    },
    strict=True, ordered=True, unique=[SUBJECT_ID, "field"], name="metadata diff",
)

REPORT = pa.DataFrameSchema(
    {
        SUBJECT_ID: pa.Column(str, pa.Check.str_matches(r"^\d+$"), unique=True),
        "key": pa.Column(str),
        "changed_fields": pa.Column(int, pa.Check.ge(0)),
        "status": pa.Column(str, pa.Check.isin(STATUSES)),
        "error": pa.Column(str, nullable=True),
    },
    strict=True, ordered=True, name="metadata report",
)


class UpdateMetadata:
    """Update the metadata of a subject set's subjects from a CSV (a dry run unless ``dry_run=false``)."""

    def __init__(self, backend: Any, run_dir: str | os.PathLike[str], csv: str | os.PathLike[str] | None = None,
                 subject_set_id: int | str | None = None, subject_set_name: str | None = None,
                 project_id: int | str | None = None, project_name: str | None = None,
                 key_column: str = SUBJECT_ID, mode: str = "merge", dtypes: Mapping[str, str] | None = None,
                 dry_run: bool = True, workers: int = 8, retries: int = 3, backoff: float = 0.5) -> None:
        self.backend = backend
        self.run_dir = Path(run_dir)
        self.csv = Path(csv) if csv else None
        self.subject_set_id = subject_set_id
        self.subject_set_name = subject_set_name
        self.project_id = project_id
        self.project_name = project_name
        self.key_column = key_column
        self.mode = mode
        self.dtypes = dict(dtypes or {})
        self.dry_run = dry_run
        self.workers = workers
        self.retries = retries
        self.backoff = backoff

    def check_config(self) -> None:
        if self.csv is None:
            raise ValueError("csv is required: the CSV of metadata updates, e.g. job.csv=updates.csv")
        check_subject_set_choice(self.subject_set_id, self.subject_set_name)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        bad = {f: t for f, t in self.dtypes.items() if t not in DTYPES}
        if bad:
            raise ValueError(f"dtypes must map columns to one of {list(DTYPES)}, got {bad}")
        if self.workers < 1 or self.retries < 0:
            raise ValueError(f"workers must be >= 1 and retries >= 0, got {self.workers} and {self.retries}")

    def read(self) -> pd.DataFrame:
        """The CSV as text cells, checked as far as possible without Zooniverse."""
        frame = read_csv(self.csv, updates_schema(self.key_column, self.dtypes), what="metadata CSV",
                         dtype=str, keep_default_na=False)
        if KEY_FIELD in frame.columns:
            raise CsvError(f"metadata CSV {self.csv}: column {KEY_FIELD!r} is glitchrun's record of each subject's "
                           "key, which a re-run finds the subject by; it cannot be updated (remove the column)")
        if not [c for c in frame.columns if c not in (self.key_column, SUBJECT_ID)]:
            raise ValueError(f"metadata CSV {self.csv}: no metadata columns besides the key column {self.key_column!r}")
        return frame

    def run(self) -> pd.DataFrame:
        """Returns the report (one row per CSV row); raises if any subject could not be written."""
        self.check_config()
        updates = self.read()
        with self.backend.connect() as connection:
            subject_set = resolve_subject_set(self.subject_set_id, self.subject_set_name, self.project_id,
                                              self.project_name, connection.login)
            where = f"subject set {subject_set.id} ({subject_set.display_name!r})"
            current = {str(s.id): s.raw.get("metadata") or {} for s in set_subjects(subject_set.id)}
            subject_of, ambiguous = subjects_by_key(current, self.key_column)
            dtypes, why = self.field_dtypes(updates, current)
            locked = locked_values(updates, self.key_column, subject_of, current)
            validate(updates, updates_schema(self.key_column, dtypes, why, subject_of, ambiguous, where, locked),
                     source=f"metadata CSV {self.csv} for {where}")
            diff, changes = plan_updates(updates, self.key_column, subject_of, current, dtypes, self.mode)
            diff_path = write_csv(diff, self.run_dir / "metadata_diff.csv", DIFF, what="metadata diff")
            log.info("%s: %d CSV rows, %d subjects change (%d fields, mode=%s); diff in %s", where, len(updates),
                     len(changes), len(diff), self.mode, diff_path)
            outcome = {sid: ("dry-run", None) for sid in changes}
            if not self.dry_run and changes:
                previous = {sid: current[sid] for sid in changes}
                backup = self.backup(subject_set.id, previous)
                log.info("previous metadata of the %d subjects backed up to %s", len(changes), backup)
                outcome = self.write(changes, previous, connection.client)
        report = self.report(updates, subject_of, diff, outcome)
        path = write_csv(report, self.run_dir / "metadata_report.csv", REPORT, what="metadata report")
        summary = report["status"].value_counts().to_dict()
        log.info("%s: %s; report in %s", "dry run, nothing written" if self.dry_run else "done", summary, path)
        failed = report[report["status"].isin(["conflict", "failed"])]
        if len(failed):
            raise RuntimeError(f"{len(failed)} subjects were not updated (conflict or failure): see {path}")
        return report

    def field_dtypes(self, updates: pd.DataFrame, current: Mapping[str, dict]) -> tuple[dict[str, str], dict[str, str]]:
        """Each field column's dtype (``dtypes`` config, else inferred from the set) and why, for messages."""
        dtypes, why = {}, {}
        for field in (c for c in updates.columns if c != SUBJECT_ID):
            if field in self.dtypes:
                dtypes[field] = self.dtypes[field]
                continue
            values = [m[field] for m in current.values() if field in m]
            dtypes[field] = infer_dtype(values)
            why[field] = (f"the field's current values are {DTYPES[dtypes[field]][2]}; set job.dtypes.{field} to store another type"
                          if values else "a new field")
        return dtypes, why

    def backup(self, subject_set_id: str, previous: Mapping[str, dict]) -> Path:
        path = self.run_dir / "metadata_backup.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"subject_set_id": str(subject_set_id), "metadata": previous}, indent=1,
                                   ensure_ascii=False), encoding="utf-8")
        return path

    def write(self, changes: Mapping[str, dict], previous: Mapping[str, dict], client: Panoptes) -> dict[str, tuple[str, str | None]]:
        """PUT every change on ``workers`` threads; subject id -> (status, error)."""

        def one(sid: str) -> tuple[str, str | None]:
            with client:  # the client is per thread: share the logged-in one
                return write_subject(sid, previous[sid], changes[sid], self.retries, self.backoff)

        outcome = {}
        with ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(one, sid): sid for sid in changes}
            for future in tqdm(as_completed(futures), total=len(futures), desc="metadata", unit="subject", disable=None):
                outcome[futures[future]] = future.result()
        return outcome

    def report(self, updates: pd.DataFrame, subject_of: Mapping[str, str], diff: pd.DataFrame,
               outcome: Mapping[str, tuple[str, str | None]]) -> pd.DataFrame:
        counts = diff[SUBJECT_ID].value_counts()
        rows = []
        for key in updates[self.key_column]:
            sid = subject_of[key]
            status, error = outcome.get(sid, ("unchanged", None))
            rows.append((sid, key, int(counts.get(sid, 0)), status, error))
        return pd.DataFrame(rows, columns=list(REPORT.columns)).astype(
            {SUBJECT_ID: str, "key": str, "changed_fields": int, "status": str, "error": str})


def write_subject(sid: str, old: dict, new: dict, retries: int, backoff: float) -> tuple[str, str | None]:
    """GET the subject (for its ETag and to see it is unchanged since planning), then PUT its new metadata.

    A failed attempt starts again from the GET: a PUT that was committed although its answer was lost
    shows up as the new metadata and counts as written; a subject changed by someone else is a conflict.
    """
    error = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            body, etag = Subject.http_get(sid, retry=False)
            stored = body["subjects"][0].get("metadata") or {}
            if not changed_fields(stored, new):
                return "written", None
            if changed_fields(stored, old):
                return "conflict", "the metadata changed since the plan was made; run again"
            Subject.http_put(sid, json={"subjects": {"metadata": new}}, etag=etag)
            return "written", None
        except (PanoptesAPIException, requests.RequestException) as err:
            error = f"{type(err).__name__}: {err}"
            log.debug("subject %s, attempt %d: %s", sid, attempt + 1, error)
    return "failed", error
