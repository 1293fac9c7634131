"""What the reliability tests check against: the embedded Panoptes' SQLite read directly (after the server
stopped, so nothing of glitchrun or panoptes-client stands between the test and the truth), and the
small inputs the jobs are fed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from glitchrun.csvio import write_csv
from tests.embedded_panoptes.helpers import png_bytes

#: the tables that hold what users made (users and client_apps change at every start: passwords rotate)
CONTENT_TABLES = ("projects", "workflows", "workflow_versions", "subject_sets", "workflow_subject_sets", "subjects",
                  "locations", "set_member_subjects", "subject_workflow_statuses", "classifications",
                  "classification_subjects", "media")


@dataclass
class Stored:
    """The server's subjects as its database holds them."""

    metadata: dict[str, dict[str, Any]]  # subject id -> metadata, of the subjects not deleted (deactivated)
    members: dict[str, list[str]]  # subject set id -> subject ids (a repeat would show twice)
    locations: dict[str, list[dict[str, Any]]]  # subject id -> its location rows, by position
    set_names: dict[str, str]  # subject set id -> display name
    media_dir: Path

    def subjects_of(self, set_name: str) -> list[str]:
        return [sid for set_id, name in self.set_names.items() if name == set_name for sid in self.members[set_id]]

    def media_bytes(self, subject_id: str) -> list[bytes | None]:
        """Each uploaded location's stored bytes, None where the server has none (never stored, or lost)."""
        found: list[bytes | None] = []
        for row in self.locations[subject_id]:
            path = self.media_dir / "subject_location" / str(row["media_name"])
            found.append(path.read_bytes() if row["content_type"] is not None and path.is_file() else None)
        return found


@contextmanager
def database(storage_dir: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the server's database, closed afterwards."""
    db = sqlite3.connect(f"file:{storage_dir / 'panoptes.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


def read_store(storage_dir: Path) -> Stored:
    with database(storage_dir) as db:
        # a deleted subject is deactivated, as on Zooniverse: its row stays, and so do its set memberships
        metadata = {str(r["id"]): json.loads(r["metadata"])
                    for r in db.execute("SELECT id, metadata FROM subjects WHERE deactivated_at IS NULL")}
        set_names = {str(r["id"]): r["display_name"] for r in db.execute("SELECT id, display_name FROM subject_sets")}
        members: dict[str, list[str]] = {set_id: [] for set_id in set_names}
        for row in db.execute("SELECT subject_set_id, subject_id FROM set_member_subjects ORDER BY id"):
            members[str(row[0])].append(str(row[1]))
        locations: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in db.execute("SELECT * FROM locations ORDER BY subject_id, position"):
            locations[str(row["subject_id"])].append(dict(row))
    return Stored(metadata, members, dict(locations), set_names, storage_dir / "media")


def fingerprint(storage_dir: Path) -> dict[str, Any]:
    """Every row of the content tables and every stored media file (name, size): equal means unchanged."""
    if not (storage_dir / "panoptes.sqlite3").exists():
        return {}
    with database(storage_dir) as db:
        state: dict[str, Any] = {t: [tuple(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY rowid")]
                                 for t in CONTENT_TABLES}
    state["files"] = sorted((str(p.relative_to(storage_dir)), p.stat().st_size)
                            for p in (storage_dir / "media").rglob("*") if p.is_file())
    return state


def write_manifest(folder: Path, subjects: int, start: int = 0) -> Path:
    """``subjects`` rows of two distinct small PNGs, a visible and a hidden metadata column."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + subjects):
        row: dict[str, Any] = {"candidate_id": f"g{i:04d}"}
        for j in range(2):
            row[f"image_{j}"] = name = f"g{i:04d}_{j}.png"
            (folder / name).write_bytes(png_bytes(2 * i + j))
        rows.append(row | {"ifo": "H1" if i % 2 else "L1", "#truth": "Blip"})
    return write_csv(pd.DataFrame(rows), folder / "manifest.csv")


def glitchrun(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m glitchrun`` as a person runs it, in ``cwd`` with outputs under it, without credentials."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PANOPTES_", "GLITCHRUN_"))}
    return subprocess.run([sys.executable, "-m", "glitchrun", f"paths.outputs={cwd / 'outputs'}", *args],
                          cwd=cwd, env=clean | env, capture_output=True, text=True, timeout=600)


def campaign_rows(state_dir: Path) -> dict[str, list[tuple]]:
    """Every row of the campaign state's tables: equal means unchanged."""
    path = state_dir / "campaign.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: sorted(db.execute(f"SELECT * FROM {table}"), key=repr) for table in tables}
    finally:
        db.close()
