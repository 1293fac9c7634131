"""Campaign state that spans rounds: rounds, their batches, subjects, volunteers' classifications and labels.

It lives in SQLite under ``campaign.state_dir`` (outside any run directory). Every state change is one
transaction, so a crash leaves either the old or the new state, and a re-run can tell where a round
stopped: ``selected`` (batch chosen) -> ``uploading`` (subject set made) -> ``uploaded`` -> ``labelled``; a
``selected`` round, nothing of which was uploaded, may be discarded to choose its batch again.
A file lock held for the whole round keeps two rounds of one campaign from running at once.

Each subject is ``active`` until glitchrun retires it: ``labelled`` (its consensus passed the threshold, or
an expert classified it) or ``disputed`` (it reached the vote cap without consensus: no label, listed for an
expert). A known-answer subject (``gold_label``: a candidate of known class shown to measure the
volunteers) retires as ``gold`` with its round and never gives a label. A retired subject keeps the
``evidence`` its decision rested on (votes, gold answer, its volunteers' skill), so a later pass changes it
only on new evidence. Classifications by project experts (``expert``) are gold answers, not votes. Retirement is
written here (``retire_sent`` = 0) before it is asked of Zooniverse and marked sent after, so a pass
stopped between the two resends it and never decides twice. Classifications are stored once each, keyed
by their Zooniverse id, with the sync cursor ``last_classification_id`` in ``meta``. State files of
earlier versions are brought up to date when opened (``migrate``).
"""

from __future__ import annotations

import errno
import fcntl
import json
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
    subject_set_id TEXT, run_dir TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, ml_weight REAL,
    selection TEXT, upload_run_dir TEXT);
CREATE TABLE IF NOT EXISTS batch (
    round INTEGER NOT NULL REFERENCES rounds(number), candidate_id TEXT NOT NULL, strategy TEXT NOT NULL,
    score REAL, predicted_class TEXT, probability REAL, distribution TEXT, PRIMARY KEY (round, candidate_id));
CREATE TABLE IF NOT EXISTS subjects (
    subject_id TEXT PRIMARY KEY, candidate_id TEXT NOT NULL, round INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'active', votes INTEGER NOT NULL DEFAULT 0, retirement_reason TEXT,
    retired_at TEXT, retire_sent INTEGER NOT NULL DEFAULT 0, gold_label TEXT, evidence TEXT);
CREATE TABLE IF NOT EXISTS labels (
    candidate_id TEXT PRIMARY KEY, label TEXT NOT NULL, source TEXT NOT NULL, round INTEGER,
    votes INTEGER, agreement REAL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS classifications (
    classification_id INTEGER NOT NULL, subject_id TEXT NOT NULL, volunteer TEXT NOT NULL,
    workflow_id TEXT NOT NULL, workflow_version TEXT NOT NULL, created_at TEXT NOT NULL, answer TEXT,
    round INTEGER, expert INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (classification_id, subject_id));
CREATE TABLE IF NOT EXISTS label_changes (
    candidate_id TEXT NOT NULL, old_label TEXT, new_label TEXT, round INTEGER, reason TEXT NOT NULL,
    at TEXT NOT NULL);
"""

#: columns added since the first state files, by table: ``migrate`` adds them to an older file
ADDED_COLUMNS = {
    "rounds": {"ml_weight": "REAL", "selection": "TEXT", "upload_run_dir": "TEXT"},
    "batch": {"distribution": "TEXT"},
    "subjects": {"status": "TEXT NOT NULL DEFAULT 'active'", "votes": "INTEGER NOT NULL DEFAULT 0",
                 "retirement_reason": "TEXT", "retired_at": "TEXT", "retire_sent": "INTEGER NOT NULL DEFAULT 0",
                 "gold_label": "TEXT", "evidence": "TEXT"},
    "classifications": {"expert": "INTEGER NOT NULL DEFAULT 0"},
}

STATUSES = ("selected", "uploading", "uploaded", "labelled")
#: a subject's status: waiting for votes, labelled (by consensus or an expert), retired without consensus, or a
#: known-answer subject retired with its round
ACTIVE, LABELLED, DISPUTED, GOLD = "active", "labelled", "disputed", "gold"
#: where a label came from: the crowd's consensus, an expert's classification (the others: data, seed)
CROWD, EXPERT = "crowd", "expert"


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
        self.migrate()

    @classmethod
    def read_only(cls, state_dir: str | os.PathLike[str]) -> CampaignState:
        """An existing state opened for reading only, for views of the campaign (its page): SQLite refuses every
        write through this connection, and nothing is created or migrated."""
        state = cls.__new__(cls)
        state.state_dir = Path(state_dir)
        state.path = state.state_dir / "campaign.sqlite"
        if not state.path.is_file():
            raise FileNotFoundError(errno.ENOENT, "no campaign state here yet", str(state.path))
        state.db = sqlite3.connect(f"{state.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        return state

    def migrate(self) -> None:
        """Create the tables, and bring a state file of an earlier version up to date in one transaction.

        An older file's batches keep the top class and its probability as their distribution; subjects of
        rounds it already labelled from exports count as retired by Zooniverse (labelled if their
        candidate got a crowd label, else disputed), so the retire pass leaves them alone.
        """
        with self.transaction() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            added = set()
            for table, columns in ADDED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                        added.add((table, name))
            if ("batch", "distribution") in added:
                db.execute("UPDATE batch SET distribution = json_object(predicted_class, probability) "
                           "WHERE predicted_class IS NOT NULL AND probability IS NOT NULL")
            if ("subjects", "status") in added:
                db.execute(
                    "UPDATE subjects SET status = CASE WHEN candidate_id IN "
                    "(SELECT candidate_id FROM labels WHERE source = 'crowd') THEN 'labelled' ELSE 'disputed' END, "
                    "retirement_reason = 'classification_count', retire_sent = 1 "
                    "WHERE round IN (SELECT number FROM rounds WHERE status = 'labelled')")

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

    @classmethod
    @contextmanager
    def locked(cls, state_dir: str | os.PathLike[str]) -> Iterator[CampaignState]:
        """The campaign state of one job: opened, held under the round lock (``lock``), closed after."""
        state = cls(state_dir)
        try:
            with state.lock():
                yield state
        finally:
            state.close()

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

    def start_round(self, number: int, subject_set_name: str, run_dir: str, batch: pd.DataFrame,
                    ml_weight: float | None = None, selection: dict[str, str] | None = None) -> Round:
        """Record a new round and its chosen batch together (columns of the ``batch`` table; ``distribution``,
        the learner's whole class distribution {class: p} per candidate, is optional), the weight the
        consensus gives the learner's vote from now on, and the settings that chose the batch."""
        distributions = batch["distribution"] if "distribution" in batch else pd.Series(None, index=batch.index)
        rows = zip(batch["candidate_id"], batch["strategy"], batch["score"], batch["predicted_class"],
                   batch["probability"], distributions)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rounds (number, status, subject_set_name, subject_set_id, run_dir, created_at, updated_at, "
                "ml_weight, selection) VALUES (?, 'selected', ?, NULL, ?, ?, ?, ?, ?)",
                (number, subject_set_name, run_dir, now(), now(), ml_weight,
                 None if selection is None else json.dumps(selection, sort_keys=True)),
            )
            db.executemany(
                "INSERT INTO batch (round, candidate_id, strategy, score, predicted_class, probability, distribution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(number, str(c), str(s), float(sc), str(p), float(pr), None if d is None else json.dumps(d))
                 for c, s, sc, p, pr, d in rows],
            )
        return Round(number, "selected", subject_set_name, None, run_dir)

    def round_selection(self, number: int) -> dict[str, str] | None:
        """The settings that chose the round's batch (None for a round recorded before they were kept)."""
        row = self.db.execute("SELECT selection FROM rounds WHERE number = ?", (number,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def discard_round(self, number: int) -> None:
        """Forget a round that uploaded nothing (status ``selected``), with its batch, and for round 1 the seed
        labels it started from; a round that began uploading is kept. Nothing else changes."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM rounds WHERE number = ? AND status != 'selected'", (number,)).fetchone():
                return
            db.execute("DELETE FROM batch WHERE round = ?", (number,))
            db.execute("DELETE FROM rounds WHERE number = ?", (number,))
            if number == 1:
                db.execute("DELETE FROM labels WHERE round = 0 AND source IN ('data', 'seed')")

    def update_round(self, number: int, status: str, subject_set_id: str | None = None,
                     upload_run_dir: str | None = None) -> None:
        """Move a round on; its ``run_dir`` stays the run that chose its batch (where its query report is), its
        ``upload_run_dir`` is the run that rendered its Q-scans, wrote its manifest and uploaded it (another one
        when the round was resumed)."""
        if status not in STATUSES:
            raise ValueError(f"unknown round status {status!r}")
        with self.transaction() as db:
            db.execute(
                "UPDATE rounds SET status = ?, subject_set_id = COALESCE(?, subject_set_id), "
                "upload_run_dir = COALESCE(?, upload_run_dir), updated_at = ? WHERE number = ?",
                (status, subject_set_id, upload_run_dir, now(), number),
            )

    def ml_weight(self) -> float | None:
        """The weight of the learner's vote fitted by the latest round that fitted one."""
        row = self.db.execute("SELECT ml_weight FROM rounds WHERE ml_weight IS NOT NULL "
                              "ORDER BY number DESC LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def batch(self, number: int) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT candidate_id, strategy, score, predicted_class, probability FROM batch WHERE round = ? ORDER BY rowid",
            self.db,
            params=(number,),
        )

    def batch_sizes(self) -> dict[int, int]:
        """How many candidates each round chose."""
        return dict(self.db.execute("SELECT round, COUNT(*) FROM batch GROUP BY round").fetchall())

    def queried(self, except_disputed: bool = False) -> set[str]:
        """Every candidate any round has chosen (never chosen twice), optionally except those whose every
        subject is disputed, which may then be offered again."""
        query = "SELECT candidate_id FROM batch"
        if except_disputed:
            query += (" WHERE candidate_id NOT IN (SELECT candidate_id FROM subjects GROUP BY candidate_id "
                      "HAVING MIN(status = 'disputed') = 1)")
        return {row[0] for row in self.db.execute(query)}

    # -- subjects -------------------------------------------------------------------------------------
    def record_subjects(self, number: int, subject_ids: dict[str, str],
                        known: dict[str, str] | None = None) -> None:
        """Remember which Zooniverse subject shows which candidate (``candidate id -> subject id``), and the class
        of those shown as known-answer subjects (``known``: candidate id -> class); a subject already known keeps
        its status."""
        known = known or {}
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO subjects (subject_id, candidate_id, round, gold_label) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(str(s), str(c), number, known.get(str(c))) for c, s in subject_ids.items()],
            )

    def subject_candidates(self) -> dict[str, str]:
        return {s: c for s, c in self.db.execute("SELECT subject_id, candidate_id FROM subjects")}

    def subjects(self, round: int | None = None) -> pd.DataFrame:
        """The campaign's subjects (index subject_id): candidate_id, round, status, votes, retirement_reason,
        retired_at, retire_sent."""
        query = "SELECT * FROM subjects" + (" WHERE round = ?" if round is not None else "") + " ORDER BY rowid"
        frame = pd.read_sql_query(query, self.db, params=(round,) if round is not None else ())
        return frame.set_index("subject_id")

    def known_answers(self) -> pd.Series:
        """The class of each known-answer subject (index subject_id)."""
        rows = self.db.execute("SELECT subject_id, gold_label FROM subjects WHERE gold_label IS NOT NULL "
                               "ORDER BY rowid")
        return pd.Series(dict(rows.fetchall()), dtype=object).rename_axis("subject_id")

    def gold_uses(self) -> pd.Series:
        """How many known-answer subjects each candidate has been shown as (index candidate_id)."""
        rows = self.db.execute("SELECT candidate_id, COUNT(*) FROM subjects WHERE gold_label IS NOT NULL "
                               "GROUP BY candidate_id")
        return pd.Series(dict(rows.fetchall()), dtype=int).rename_axis("candidate_id")

    def distributions(self) -> dict[str, dict[str, float]]:
        """The learner's class distribution for each subject, as recorded when its batch was chosen."""
        rows = self.db.execute("SELECT s.subject_id, b.distribution FROM subjects s JOIN batch b "
                               "ON b.round = s.round AND b.candidate_id = s.candidate_id "
                               "WHERE b.distribution IS NOT NULL")
        return {subject: json.loads(text) for subject, text in rows}

    def pending_retirements(self) -> pd.DataFrame:
        """Subjects retired here but not yet confirmed by Zooniverse (subject_id, retirement_reason)."""
        return pd.read_sql_query("SELECT subject_id, retirement_reason FROM subjects WHERE status != ? AND "
                                 "retire_sent = 0 ORDER BY rowid", self.db, params=(ACTIVE,))

    def mark_retirement_sent(self, subject_ids: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE subjects SET retire_sent = 1 WHERE subject_id = ?", [(str(s),) for s in subject_ids])

    def record_pass(self, subjects: pd.DataFrame, changes: pd.DataFrame) -> None:
        """Write one retire pass's decisions in one transaction.

        ``subjects`` (index subject_id; candidate_id, round, status, retirement_reason, votes, label, source,
        agreement, sent, decided, evidence): every campaign subject after the pass; a row whose status leaves
        ``active`` is retired now (to be confirmed by Zooniverse unless ``sent``). Only a ``decided`` row (one the
        pass decided, not one it kept for want of new evidence) sets its label from ``label`` (``source``: crowd
        or expert) or, when that is missing and it is retired, removes its crowd or expert label; ``evidence``
        (JSON), when given, replaces what the subject's decision rests on. ``changes`` rows go to ``label_changes``.
        """
        stamp = now()
        with self.transaction() as db:
            for subject, row in subjects.iterrows():
                db.execute(
                    "UPDATE subjects SET votes = ?, status = ?, retirement_reason = COALESCE(retirement_reason, ?), "
                    "retired_at = CASE WHEN ? != 'active' THEN COALESCE(retired_at, ?) END, "
                    "retire_sent = CASE WHEN status = 'active' AND ? != 'active' THEN ? ELSE retire_sent END, "
                    "evidence = COALESCE(?, evidence) WHERE subject_id = ?",
                    (int(row["votes"]), row["status"], row["retirement_reason"], row["status"], stamp, row["status"],
                     int(bool(row["sent"])), row.get("evidence"), str(subject)),
                )
                if not row.get("decided", True):
                    continue
                if isinstance(row["label"], str):
                    db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (row["candidate_id"], row["label"], row.get("source", CROWD), int(row["round"]),
                                int(row["votes"]), float(row["agreement"]), stamp))
                elif row["status"] in (LABELLED, DISPUTED):
                    db.execute("DELETE FROM labels WHERE candidate_id = ? AND source IN (?, ?)",
                               (row["candidate_id"], CROWD, EXPERT))
            db.executemany("INSERT INTO label_changes VALUES (?, ?, ?, ?, ?, ?)",
                           [(c.candidate_id, c.old_label, c.new_label, c.round, c.reason, stamp)
                            for c in changes.itertuples(index=False)])

    # -- classifications --------------------------------------------------------------------------------
    def add_classifications(self, rows: Iterable[tuple], cursor: int) -> int:
        """Store classifications once each (``classification_id, subject_id, volunteer, workflow_id,
        workflow_version, created_at, answer, round, expert`` tuples; ``expert``: 1 for a project expert's) and
        move the sync cursor, together; returns how many were new."""
        with self.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO classifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(rows))
            added = db.total_changes - before
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_classification_id', ?)", (str(cursor),))
        return added

    def classifications(self, round: int | None = None) -> pd.DataFrame:
        query = "SELECT * FROM classifications" + (" WHERE round = ?" if round is not None else "")
        return pd.read_sql_query(query + " ORDER BY classification_id", self.db,
                                 params=(round,) if round is not None else ())

    def votes(self, expert: bool = False) -> pd.DataFrame:
        """One vote per volunteer and campaign subject (the first answered one): subject_id, volunteer, label; with
        ``expert``, the project experts' answers instead of the volunteers' votes."""
        frame = pd.read_sql_query(
            "SELECT subject_id, volunteer, answer AS label FROM classifications WHERE answer IS NOT NULL "
            "AND expert = ? AND subject_id IN (SELECT subject_id FROM subjects) ORDER BY classification_id", self.db,
            params=(int(expert),))
        return frame.drop_duplicates(["subject_id", "volunteer"]).reset_index(drop=True)

    def label_changes(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM label_changes ORDER BY rowid", self.db)

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
        by_status = dict(self.db.execute("SELECT status, COUNT(*) FROM subjects GROUP BY status").fetchall())
        counts = {table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                  for table in ("rounds", "batch", "labels", "classifications", "label_changes")}
        return {"rounds": counts["rounds"], "queried": counts["batch"], "labels": counts["labels"],
                "labels_by_source": by_source, "subjects_by_status": by_status,
                "classifications": counts["classifications"], "label_changes": counts["label_changes"]}
