"""SQLite persistence of the embedded Panoptes: schema, one guarded connection, time and JSON helpers.

One connection behind one re-entrant lock keeps every request's reads and writes in a single
transaction (waitress threads and ``Subject.async_saves()`` pools hit the server in parallel; SQLite
work takes microseconds, so serialising it costs nothing measurable). WAL with ``synchronous=NORMAL``
makes a commit cheap while a crash still leaves the last committed state intact. ``AUTOINCREMENT``
ids are never reused, so ids keep growing across restarts and deletes, as on the real server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    uploaded_subjects_count INTEGER NOT NULL DEFAULT 0,  -- every subject ever created, deleted ones too
    subject_limit INTEGER,                               -- NULL: the server's rule
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS client_apps (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    display_name TEXT NOT NULL,
    slug TEXT NOT NULL,
    private INTEGER NOT NULL,
    live INTEGER NOT NULL DEFAULT 0,
    launch_approved INTEGER NOT NULL DEFAULT 0,
    beta_approved INTEGER NOT NULL DEFAULT 0,
    state TEXT,
    attrs TEXT NOT NULL,  -- JSON: the free-form attributes (description, tags, configuration, ...)
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_owner ON projects(owner_id);
CREATE TABLE IF NOT EXISTS project_roles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    roles TEXT NOT NULL,  -- JSON array of role names (the real server does not validate them)
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, user_id)
);
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    active INTEGER NOT NULL,
    major INTEGER NOT NULL,
    minor INTEGER NOT NULL,
    tasks TEXT NOT NULL,
    first_task TEXT NOT NULL,
    retirement TEXT NOT NULL,
    attrs TEXT NOT NULL,  -- JSON: configuration, primary_language, grouped, pairwise, ...
    finished_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_project ON workflows(project_id);
CREATE TABLE IF NOT EXISTS workflow_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    major INTEGER NOT NULL,
    minor INTEGER NOT NULL,
    tasks TEXT NOT NULL,
    first_task TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (workflow_id, major, minor)
);
CREATE TABLE IF NOT EXISTS subject_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subject_sets_project ON subject_sets(project_id);
CREATE TABLE IF NOT EXISTS workflow_subject_sets (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    subject_set_id INTEGER NOT NULL REFERENCES subject_sets(id) ON DELETE CASCADE,
    PRIMARY KEY (workflow_id, subject_set_id)
);
CREATE INDEX IF NOT EXISTS workflow_subject_sets_set ON workflow_subject_sets(subject_set_id);
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    metadata TEXT NOT NULL,
    external_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subjects_project ON subjects(project_id);
CREATE TABLE IF NOT EXISTS locations (
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    mime TEXT NOT NULL,
    external_url TEXT,        -- set for a location hosted elsewhere
    media_name TEXT UNIQUE,   -- set for an upload: the file name under media/subject_location/
    content_type TEXT,        -- the uploaded Content-Type, once the bytes are stored
    PRIMARY KEY (subject_id, position)
);
CREATE TABLE IF NOT EXISTS set_member_subjects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_set_id INTEGER NOT NULL REFERENCES subject_sets(id) ON DELETE CASCADE,
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (subject_set_id, subject_id)
);
CREATE INDEX IF NOT EXISTS set_member_subjects_subject ON set_member_subjects(subject_id);
CREATE TABLE IF NOT EXISTS subject_workflow_statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    classifications_count INTEGER NOT NULL DEFAULT 0,
    retired_at TEXT,
    retirement_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (workflow_id, subject_id)
);
CREATE INDEX IF NOT EXISTS subject_workflow_statuses_subject ON subject_workflow_statuses(subject_id);
CREATE TABLE IF NOT EXISTS classifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    workflow_id INTEGER NOT NULL,
    user_id INTEGER,
    user_ip TEXT NOT NULL,
    completed INTEGER NOT NULL,
    gold_standard INTEGER,
    expert_classifier TEXT,   -- owner | expert: a gold-standard classification by a project expert
    workflow_version TEXT NOT NULL,
    annotations TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS classifications_workflow ON classifications(workflow_id);
CREATE INDEX IF NOT EXISTS classifications_project ON classifications(project_id);
CREATE INDEX IF NOT EXISTS classifications_user ON classifications(user_id, workflow_id);
CREATE TABLE IF NOT EXISTS classification_subjects (
    classification_id INTEGER NOT NULL REFERENCES classifications(id) ON DELETE CASCADE,
    subject_id INTEGER NOT NULL,
    PRIMARY KEY (classification_id, subject_id)
);
CREATE INDEX IF NOT EXISTS classification_subjects_subject ON classification_subjects(subject_id);
CREATE TABLE IF NOT EXISTS gold_standard_annotations (  -- the real server's read-only snapshot (resources.py)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classification_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    workflow_id INTEGER NOT NULL,
    subject_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    annotations TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS media (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    linked_type TEXT NOT NULL,   -- projects | workflows | subject_sets
    linked_id INTEGER NOT NULL,
    media_type TEXT NOT NULL,    -- e.g. project_classifications_export
    file_name TEXT NOT NULL,
    state TEXT NOT NULL,
    recipients TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (linked_type, linked_id, media_type)
);
CREATE TABLE IF NOT EXISTS jobs (  -- the background worker's queue (rules.py worker_delay, visibility_lag)
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    due REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(due);
CREATE TABLE IF NOT EXISTS dump_requests (  -- the dumps the export rate limit let through, per medium
    media_id INTEGER NOT NULL REFERENCES media(id) ON DELETE CASCADE,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dump_requests_media ON dump_requests(media_id);
"""

#: columns added since the first stores, by table: ``deactivated_at`` is set when a project, workflow or subject
#: is deleted (``lib/json_api_controller/deactivatable_resource.rb``: deactivated, not removed); ``visible_at``
#: is when a classification can be read (rules.py ``visibility_lag``; NULL: at once)
ADDED_COLUMNS = {
    "users": {"uploaded_subjects_count": "INTEGER NOT NULL DEFAULT 0", "subject_limit": "INTEGER"},
    "projects": {"deactivated_at": "TEXT"},
    "workflows": {"deactivated_at": "TEXT"},
    "subjects": {"deactivated_at": "TEXT"},
    "classifications": {"visible_at": "REAL", "expert_classifier": "TEXT"},
}


def now() -> str:
    """The current UTC time as Panoptes writes it: ISO-8601 with milliseconds and ``Z``."""
    moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def csv_time(iso: str | None) -> str:
    """An ISO timestamp of this store as the CSV exports print it (``YYYY-MM-DD HH:MM:SS UTC``)."""
    return f"{iso[:10]} {iso[11:19]} UTC" if iso else ""


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 left unescaped: how the columns and the export cells hold JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def id_list(ids: list[int]) -> str:
    """A JSON array for ``IN (SELECT value FROM json_each(?))``: any number of ids in one parameter."""
    return json.dumps(ids)


class Store:
    """The database file ``<storage_dir>/panoptes.sqlite3`` and the ``media/`` folder beside it."""

    def __init__(self, storage_dir: Path) -> None:
        # absolute: Flask's send_file would take a relative path as relative to the package, not the cwd
        self.storage_dir = storage_dir.absolute()
        self.media_dir = self.storage_dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.storage_dir / "panoptes.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added since a store was first made (a restart keeps older stores working)."""
        for table, added in ADDED_COLUMNS.items():
            columns = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for name, ddl in added.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on success and rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def insert(db: sqlite3.Connection, table: str, values: dict[str, Any]) -> int:
    """INSERT one row of ``{column: value}``; the new id."""
    columns = ", ".join(values)
    marks = ", ".join("?" * len(values))
    return int(db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(values.values())).lastrowid)


def update(db: sqlite3.Connection, table: str, ident: int, values: dict[str, Any]) -> None:
    """UPDATE the columns ``values`` names in row ``ident``."""
    if values:
        assignments = ", ".join(f"{column} = ?" for column in values)
        db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*values.values(), ident])
