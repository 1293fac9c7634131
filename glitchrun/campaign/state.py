"""Campaign state that spans rounds: rounds, the batch each chose, its subjects, and the labels learned.

It lives in SQLite under ``campaign.state_dir`` (outside any run directory). Every state change is one
transaction, so a crash leaves either the old or the new state, and a re-run can tell where a round
stopped: ``selected`` (batch chosen) -> ``uploading`` (subject set made) -> ``uploaded`` -> ``labelled``.
A file lock held for the whole round keeps two rounds of one campaign from running at once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    number INTEGER PRIMARY KEY, status TEXT NOT NULL, subject_set_name TEXT NOT NULL,
    subject_set_id TEXT, run_dir TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch (
    round INTEGER NOT NULL REFERENCES rounds(number), candidate_id TEXT NOT NULL, strategy TEXT NOT NULL,
    score REAL, predicted_class TEXT, probability REAL, PRIMARY KEY (round, candidate_id));
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY, candidate_id TEXT NOT NULL, round INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    candidate_id TEXT PRIMARY KEY, label TEXT NOT NULL, source TEXT NOT NULL, round INTEGER,
    votes INTEGER, agreement REAL, updated_at TEXT NOT NULL);
"""

STATUSES = ("selected", "uploading", "uploaded", "labelled")


class CampaignBusy(RuntimeError):
    """Another process is running a round of this campaign."""


@dataclass(frozen=True)
class Round:
    number: int
    status: str
    subject_set_name: str
    subject_set_id: str | None
    run_dir: str | None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CampaignState:
    """The SQLite state of one campaign (``<state_dir>/campaign.sqlite``)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / "campaign.sqlite"
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions only
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the campaign's round lock, or raise ``CampaignBusy`` at once if another process has it."""
        handle = open(self.state_dir / "round.lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CampaignBusy(
                    f"another glitchrun round of this campaign is running (lock {handle.name}); "
                    "wait for it to finish, then run again"
                ) from None
            yield
        finally:
            handle.close()  # closing releases the lock, also when the process dies

    # -- key/value facts: Zooniverse ids, the dataset's fingerprint ------------------------------------
    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, **values: str) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    # -- rounds ---------------------------------------------------------------------------------------
    def last_round(self) -> Round | None:
        row = self.db.execute(
            "SELECT number, status, subject_set_name, subject_set_id, run_dir FROM rounds ORDER BY number DESC LIMIT 1"
        ).fetchone()
        return Round(*row) if row else None

    def rounds(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM rounds ORDER BY number", self.db)

    def start_round(self, number: int, subject_set_name: str, run_dir: str, batch: pd.DataFrame) -> Round:
        """Record a new round and its chosen batch together (columns of the ``batch`` table)."""
        rows = batch[["candidate_id", "strategy", "score", "predicted_class", "probability"]].itertuples(index=False)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds VALUES (?, 'selected', ?, NULL, ?, ?, ?)",
                (number, subject_set_name, run_dir, now(), now()),
            )
            db.executemany(
                "INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?)",
                [(number, str(c), str(s), float(sc), str(p), float(pr)) for c, s, sc, p, pr in rows],
            )
        return Round(number, "selected", subject_set_name, None, run_dir)

    def update_round(self, number: int, status: str, subject_set_id: str | None = None) -> None:
        """Move a round on; its ``run_dir`` stays the run that chose its batch (where its query report is)."""
        if status not in STATUSES:
            raise ValueError(f"unknown round status {status!r}")
        with self.transaction() as db:
            db.execute(
                "UPDATE rounds SET status = ?, subject_set_id = COALESCE(?, subject_set_id), updated_at = ? "
                "WHERE number = ?",
                (status, subject_set_id, now(), number),
            )

    def batch(self, number: int) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT candidate_id, strategy, score, predicted_class, probability FROM batch WHERE round = ? ORDER BY rowid",
            self.db,
            params=(number,),
        )

    def queried(self) -> set[str]:
        """Every candidate any round has chosen (never chosen twice)."""
        return {row[0] for row in self.db.execute("SELECT candidate_id FROM batch")}

    # -- subjects -------------------------------------------------------------------------------------
    def record_subjects(self, number: int, subject_ids: dict[str, str]) -> None:
        """Remember which Zooniverse subject shows which candidate (``candidate id -> subject id``)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO subjects VALUES (?, ?, ?)",
                [(str(s), str(c), number) for c, s in subject_ids.items()],
            )

    def subject_candidates(self) -> dict[str, str]:
        return {s: c for s, c in self.db.execute("SELECT subject_id, candidate_id FROM subjects")}

    # -- labels ---------------------------------------------------------------------------------------
    def add_labels(self, labels: Iterable[dict]) -> int:
        """Upsert labels (keys: candidate_id, label, source, and optionally round, votes, agreement)."""
        rows = [
            (str(l["candidate_id"]), str(l["label"]), str(l["source"]), l.get("round"), l.get("votes"),
             l.get("agreement"), now())
            for l in labels
        ]
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def labels(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM labels ORDER BY candidate_id", self.db).set_index("candidate_id")

    def summary(self) -> dict:
        """Counts for logs and reports."""
        by_source = dict(self.db.execute("SELECT source, COUNT(*) FROM labels GROUP BY source").fetchall())
        counts = {table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in ("rounds", "batch", "labels")}
        return {"rounds": counts["rounds"], "queried": counts["batch"], "labels": counts["labels"], "labels_by_source": by_source}
