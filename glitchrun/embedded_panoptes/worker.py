"""The background worker: Sidekiq's place in the embedded Panoptes (rules.py ``worker_delay``, ``visibility_lag``).

A request schedules a job (counting.py ``JOBS``) for a moment on the rules' clock. A job due at once runs
inside the request's transaction, so a quiet server counts and retires before it answers; a later one is
stored in the ``jobs`` table and run by ``Worker``, a thread that takes the due jobs one transaction each.
The queue lives in SQLite, so jobs a stopped server left behind run after the next start, as Sidekiq's
queue in Redis outlives a restart of the API.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from typing import Any

from glitchrun.embedded_panoptes.counting import JOBS
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.embedded_panoptes.store import Store, insert, now

log = logging.getLogger(__name__)

#: how often the worker looks for due jobs while any are waiting (seconds)
POLL = 0.05


def schedule(db: sqlite3.Connection, rules: Rules, kind: str, payload: dict[str, Any], due: float) -> None:
    """Run job ``kind`` now (in the caller's transaction) if it is due, else queue it for the worker."""
    if due <= rules.clock():
        JOBS[kind](db, payload, now())
    else:
        insert(db, "jobs", {"due": due, "kind": kind, "payload": json.dumps(payload)})


class Worker:
    """A daemon thread running the stored jobs as they fall due, in due order."""

    def __init__(self, store: Store, rules: Rules) -> None:
        self.store = store
        self.rules = rules
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="panoptes-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop between jobs; jobs not yet due stay queued for the next start."""
        self._stopping.set()
        self._thread.join(timeout=10)

    def run_due(self) -> int:
        """Run every job due now, one transaction each, in due order; how many ran. A job that fails is logged
        and dropped, as Sidekiq drops a job that keeps failing."""
        ran = 0
        while not self._stopping.is_set():
            with self.store.tx() as db:
                job = db.execute("SELECT * FROM jobs WHERE due <= ? ORDER BY due, id LIMIT 1",
                                 (self.rules.clock(),)).fetchone()
            if job is None:
                return ran
            try:
                with self.store.tx() as db:
                    db.execute("DELETE FROM jobs WHERE id = ?", (job["id"],))
                    JOBS[job["kind"]](db, json.loads(job["payload"]), now())
            except Exception:
                log.exception("embedded Panoptes worker: job %s %s failed; dropped", job["kind"], job["payload"])
                with self.store.tx() as db:
                    db.execute("DELETE FROM jobs WHERE id = ?", (job["id"],))
            ran += 1
        return ran

    @staticmethod
    def needed(store: Store, rules: Rules) -> bool:
        """A worker runs when the rules delay work, or when a busier earlier run left jobs behind."""
        with store.tx() as db:
            return rules.busy or db.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is not None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.run_due()
            self._stopping.wait(POLL)
