"""Volunteers' classifications, read through the API into the campaign state as they come.

Zooniverse gives a project's owners its classifications page by page in id order from a cursor
(``GET /api/classifications/project?project_id=…&last_id=…``, what panoptes-client's
``Classification.where(scope="project", …)`` sends; the real controller is
``app/controllers/api/v1/classifications_controller.rb#project``, its paging
``ClassificationSerializer.add_last_id_paging_hrefs``). The cursor is kept in the campaign state and moved
in the same transaction as the rows it covers, and each classification is stored once under its id, so
a sync repeated after a crash, a retry or an overlapping page never counts a vote twice. No export is
needed, and a project that is not live (whose classifications Zooniverse does not count) is read the same.
A classification by an account holding the project's expert role is stored as an expert's (gold.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from panoptes_client import Panoptes, Workflow

from glitchrun.campaign.gold import expert_accounts
from glitchrun.campaign.ingest import volunteer_key
from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.tasks import AnswerError, TaskSpec

log = logging.getLogger(__name__)

CURSOR = "last_classification_id"
#: rows stored per transaction while reading (the cursor moves with them)
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


def sync_classifications(state: CampaignState, project_id: str, workflow: Workflow, task: TaskSpec) -> SyncResult:
    """Store the project's classifications after the cursor that count for the campaign's task (its workflow,
    the versions that count: ``TaskSpec.skip_reason``); each classification's round is that of its subject."""
    start = cursor = int(state.get(CURSOR) or 0)
    rounds = {s: int(r) for s, r in state.subjects()["round"].items()}
    experts = expert_accounts(project_id)
    rows: list[tuple] = []
    read = stored = other = unreadable = 0
    for raw in project_classifications(project_id, cursor):
        read += 1
        cursor = max(cursor, int(raw["id"]))
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
            stored += state.add_classifications(rows, cursor)
            rows = []
    stored += state.add_classifications(rows, cursor)
    result = SyncResult(read, stored, other, unreadable)
    log.info("classification sync: %d read after id %d, %d new votes stored, %d of another workflow or task "
             "version skipped", read, start, stored, other)
    return result
