"""Volunteers' classifications, read through the API into the campaign state as they come.

Zooniverse gives a project's owners its classifications page by page in id order from a cursor
(``GET /api/classifications/project?project_id=…&last_id=…``, what panoptes-client's
``Classification.where(scope="project", …)`` sends; the real controller is
``app/controllers/api/v1/classifications_controller.rb#project``, its paging
``ClassificationSerializer.add_last_id_paging_hrefs``). Each classification is stored once under its id,
so reading one again (after a crash, a retry, an overlapping page, or on purpose) never counts a vote twice.
No export is needed, and a project that is not live (whose classifications Zooniverse does not count) is
read the same.

The cursor is not simply the highest id read. On the real, Postgres-backed server a classification gets its
id when it is inserted but is seen by readers only when its transaction commits, so under concurrent
writes a classification can become visible after one with a higher id: a reader that moved its cursor to
the higher id would never ask for the lower one again, and that vote would be lost. So every pass reads
again a trailing window: the cursor only moves to the highest id created ``WINDOW`` seconds or more before
the newest classification seen (both times the server's own ``created_at``, so no clock is compared with
another). An id older than that was inserted before anything still uncommitted, so nothing below the
cursor can still appear. The cost is reading the classifications of the last ``WINDOW`` seconds of
activity once more per pass; storage ignores the repeats. A classification by an account holding the
project's expert role is stored as an expert's (gold.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from panoptes_client import Panoptes, Workflow

from glitchrun.campaign.gold import expert_accounts
from glitchrun.campaign.ingest import volunteer_key
from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.tasks import AnswerError, TaskSpec

log = logging.getLogger(__name__)

CURSOR = "last_classification_id"
#: the newest ``created_at`` read so far: the end of the trailing window
NEWEST = "newest_classification_at"
#: how far back (seconds of the server's ``created_at``) every pass reads again: far longer than a classification
#: can stay uncommitted (a Postgres statement on zooniverse.org is stopped after 300 s: PG_STATEMENT_TIMEOUT,
#: ``config/initializers/1_panoptes.rb``)
WINDOW = 600.0
#: rows stored per transaction while reading (the cursor moves at the end of the pass)
CHUNK = 500
PAGE_SIZE = 100


@dataclass(frozen=True)
class SyncResult:
    read: int  # classifications the server returned after the cursor
    stored: int  # new rows in the campaign state (one per classification and subject)
    other: int  # of another workflow or task version: not stored
    unreadable: int  # stored without an answer: annotations that do not answer the question


def project_classifications(project_id: str, last_id: int) -> Iterator[dict[str, Any]]:
    """The project's classifications after ``last_id``, page by page as ``Classification.where(scope="project",
    project_id=…, last_id=…)`` reads them, each page retried after a transient failure (the client's own
    paginator does not retry its next pages). ``last_id`` is sent even at the start (0): only with it does
    the real server order by id; the server's ``next_href`` carries the next cursor, and an empty page ends."""
    client = Panoptes.client()
    path: str | None = "/classifications/project"
    params: dict[str, Any] = {"project_id": str(project_id), "last_id": last_id, "page_size": PAGE_SIZE}
    while path:
        page, _ = client.get(path, params=params, retry=True)
        yield from page.get("classifications", [])
        path = page.get("meta", {}).get("classifications", {}).get("next_href") if page.get("classifications") else None
        params = {}


def sync_classifications(state: CampaignState, project_id: str, workflow: Workflow, task: TaskSpec,
                         window: float = WINDOW) -> SyncResult:
    """Store the project's classifications after the cursor that count for the campaign's task (its workflow,
    the versions that count: ``TaskSpec.skip_reason``); each classification's round is that of its subject.
    The cursor then moves past what is older than the trailing ``window`` (the module docstring says why)."""
    start = int(state.get(CURSOR) or 0)
    newest = created(state.get(NEWEST))
    rounds = {s: int(r) for s, r in state.subjects()["round"].items()}
    read_at: list[tuple[int, datetime | None]] = []
    experts = expert_accounts(project_id)
    rows: list[tuple] = []
    read = stored = other = unreadable = 0
    for raw in project_classifications(project_id, start):
        read += 1
        when = created(raw.get("created_at"))
        read_at.append((int(raw["id"]), when))
        if when is not None and (newest is None or when > newest):
            newest = when
        links = raw.get("links") or {}
        metadata = raw.get("metadata") or {}
        if task.skip_reason(links.get("workflow"), metadata.get("workflow_version")) is not None:
            other += 1
        else:
            try:
                label = task.answer(raw.get("annotations"))
            except AnswerError as err:
                log.warning("classification %s: %s; stored without an answer", raw["id"], err)
                label, unreadable = None, unreadable + 1
            volunteer = volunteer_key(links.get("user"), None, f"anonymous-{raw['id']}")
            expert = int(str(links.get("user")) in experts)
            rows += [(int(raw["id"]), str(subject), volunteer, str(workflow.id), str(metadata.get("workflow_version")),
                      str(raw.get("created_at")), label, rounds.get(str(subject)), expert)
                     for subject in links.get("subjects", [])]
        if len(rows) >= CHUNK:
            stored += state.add_classifications(rows, start)
            rows = []
    settled = newest - timedelta(seconds=window) if newest else None
    cursor = max([start] + [i for i, when in read_at if settled and when and when <= settled])
    stored += state.add_classifications(rows, cursor)
    if newest is not None:
        state.put(**{NEWEST: newest.isoformat()})
    result = SyncResult(read, stored, other, unreadable)
    log.info("classification sync: %d read after id %d, %d new votes stored, %d of another workflow or task version "
             "skipped; the next pass reads after id %d", read, start, stored, other, cursor)
    return result


def created(stamp: str | None) -> datetime | None:
    """A Zooniverse ``created_at`` (``2026-01-01T12:00:00.000Z``) as a time, None when absent or unreadable."""
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
