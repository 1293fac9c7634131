"""``job=init_project``: the campaign's project, its workflow and a first subject set, made idempotently.

The project is made live or not as ``campaign.project.live`` says (a project update: Zooniverse counts
classifications only on live projects), and the workflow's ``classification_count`` retirement is only a
safety cap above glitchrun's own consensus retirement.

Everything that can be wrong in the input (project and workflow settings, the manifest and its files)
is checked before the first request, so a bad config or manifest changes nothing on Zooniverse. The
resources are found by name among the owner's before any is made, so a second run (after a crash, or
with a longer manifest) only fills in what is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from glitchrun.zooniverse.manifest import Manifest, read_manifest
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    WorkflowSpec,
    check_upload_room,
    ensure_project,
    ensure_subject_set,
    ensure_workflow,
    find_project,
    find_subject_set,
    link_subject_set,
    set_subject_count,
)
from glitchrun.zooniverse.uploader import SubjectUploader

log = logging.getLogger(__name__)

IDS_FILE = "zooniverse_ids.json"


class UploadNotVerified(RuntimeError):
    """The subject set does not hold exactly the manifest; a re-run resumes the upload."""


class InitProject:
    """Create (or find) the project, the workflow and, from a manifest, the initial subject set."""

    def __init__(
        self,
        backend: Any,
        project: dict[str, Any],
        workflow: dict[str, Any],
        uploader: SubjectUploader,
        run_dir: str,
        subject_set_name: str = "initial",
        manifest: str | None = None,
        key_column: str = "candidate_id",
        media_anywhere: bool = False,
    ) -> None:
        self.backend = backend
        self.project = project
        self.workflow = workflow
        self.uploader = uploader
        self.run_dir = Path(run_dir)
        self.subject_set_name = subject_set_name
        self.manifest = manifest
        self.key_column = key_column
        self.media_anywhere = media_anywhere

    def validate(self) -> tuple[ProjectSpec, WorkflowSpec, Manifest | None]:
        """The checked settings and manifest; raises before anything is sent if any is unusable."""
        project = ProjectSpec(**self.project)
        for name in ("display_name", "description", "primary_language"):
            if not str(getattr(project, name) or "").strip():
                raise ValueError(f"campaign.project.{name} is empty")
        workflow = WorkflowSpec(**self.workflow)
        if not str(workflow.display_name or "").strip():
            raise ValueError("campaign.workflow.display_name is empty")
        if self.manifest is None:
            return project, workflow, None
        if not str(self.subject_set_name or "").strip():
            raise ValueError("job.subject_set_name is empty: the subject set needs a name")
        return project, workflow, read_manifest(self.manifest, self.key_column, media_anywhere=self.media_anywhere)

    def run(self) -> dict[str, str]:
        """The ids of the project, workflow and (with a manifest) subject set; also written to the run directory."""
        project_spec, workflow_spec, manifest = self.validate()
        with self.backend.connect() as conn:
            if manifest is not None:
                self.check_room(project_spec, manifest, conn.login)
            project, _ = ensure_project(project_spec, conn.login)
            workflow, _ = ensure_workflow(project, workflow_spec)
            ids = {"endpoint": conn.endpoint, "project_id": str(project.id), "workflow_id": str(workflow.id)}
            subject_set = None
            if manifest is not None:
                subject_set, _ = ensure_subject_set(project, self.subject_set_name)
                ids["subject_set_id"] = str(subject_set.id)
            path = self.write_ids(ids)
            log.info("Zooniverse ids (%s): %s", path, ", ".join(f"{k}={v}" for k, v in ids.items()))
            if subject_set is not None:
                self.upload(manifest, project, workflow, subject_set)
        return ids

    def check_room(self, project_spec: ProjectSpec, manifest: Manifest, owner: str | None) -> None:
        """Refuse, before anything is made, a manifest the account's upload limit cannot take."""
        project = find_project(project_spec, owner)
        subject_set = find_subject_set(project, self.subject_set_name) if project is not None else None
        there = set_subject_count(subject_set.id) if subject_set is not None else 0
        check_upload_room(len(manifest.keys) - there)

    def upload(self, manifest: Manifest, project: Any, workflow: Any, subject_set: Any) -> None:
        """Fill the set from the manifest; link it to the workflow once it verifies, so volunteers see it whole."""
        outcome = self.uploader.upload(manifest, str(project.id), str(subject_set.id), self.run_dir)
        if not outcome.ok:
            raise UploadNotVerified(
                f"subject set {subject_set.id} does not hold exactly the manifest ({len(outcome.failed)} keys "
                f"failed); it is not linked to the workflow yet. See {outcome.report} and run the job again to resume")
        link_subject_set(workflow, subject_set)

    def write_ids(self, ids: dict[str, str]) -> Path:
        path = self.run_dir / IDS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ids, indent=2) + "\n")
        return path
