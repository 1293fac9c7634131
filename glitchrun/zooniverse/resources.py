"""Finding and creating the campaign's Zooniverse resources through panoptes-client, idempotently.

A campaign is one project, one workflow whose task ``T0`` asks for the glitch class (a single-answer
question whose answers are the classes, or a survey task whose choices map to the classes), and one
subject set per round. Resources are looked up by display name among the logged-in owner's, so re-running
a job after a crash finds what the first run made instead of making it twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from panoptes_client import (
    Panoptes,
    Project,
    ProjectRole,
    Subject,
    SubjectSet,
    SubjectWorkflowStatus,
    Workflow,
)
from panoptes_client.panoptes import PanoptesAPIException
from panoptes_client.set_member_subject import (
    SetMemberSubject,  # not exported by the package
)

log = logging.getLogger(__name__)

TASK_KEY = "T0"


@dataclass(frozen=True)
class ProjectSpec:
    """What the project should look like (config ``campaign.project``)."""

    display_name: str
    description: str
    primary_language: str = "en"
    private: bool = True
    #: Zooniverse counts classifications (and retires by count) only on a live project; set by init_project
    live: bool = False


@dataclass(frozen=True)
class WorkflowSpec:
    """The workflow (config ``campaign.workflow``): task ``T0`` asks for the glitch class, as a single-answer
    question whose answers are the classes (``task_type: single``) or as a survey task (``survey``) whose
    choices (choice id -> {class, label, description}) map to the classes. ``task`` and ``versions`` say
    which task and workflow versions ingest reads (``glitchrun.campaign.tasks.TaskSpec``)."""

    display_name: str
    classes: Sequence[str]
    question: str = "Which glitch class is this?"
    retirement_count: int = 3
    task_type: str = "single"
    choices: Mapping[str, Mapping[str, str]] | None = None
    task: str | None = None
    versions: Any = None

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("campaign.workflow.classes is empty: the workflow needs at least one answer")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"campaign.workflow.classes has repeated names: {list(self.classes)}")
        if int(self.retirement_count) < 1:
            raise ValueError(f"campaign.workflow.retirement_count must be >= 1, got {self.retirement_count}")
        if self.task_type not in ("single", "survey"):
            raise ValueError(f"campaign.workflow.task_type must be single or survey, got {self.task_type!r}")
        if self.task_type == "survey":
            if not self.choices:
                raise ValueError("campaign.workflow.choices is empty: a survey task needs its choice -> class table")
            unmapped = [c for c in self.choices if not isinstance(self.choices[c], Mapping)
                        or not self.choices[c].get("class")]
            if unmapped:
                raise ValueError(f"campaign.workflow.choices {unmapped} have no class: each choice is "
                                 "{class: ..., label: ..., description: ...}")
            missing = sorted(set(self.classes) - {str(c["class"]) for c in self.choices.values()})
            if missing:
                raise ValueError(f"campaign.workflow.classes {missing} have no choice in campaign.workflow.choices; "
                                 "every class needs one")
        version_texts(self.versions)

    def shown_choices(self) -> dict[str, Mapping[str, str]]:
        """The survey choices a workflow made for the campaign shows: the first choice of each campaign class.
        The others (another id of a class, e.g. of an older workflow version; Gravity Spy's O3 choices in a
        v1.0-class campaign) are still read in exports, votes for classes outside the campaign counted apart."""
        shown: dict[str, Mapping[str, str]] = {}
        for cid, choice in (self.choices or {}).items():
            if str(choice["class"]) in self.classes and all(c["class"] != choice["class"] for c in shown.values()):
                shown[str(cid)] = choice
        return shown

    def options(self) -> list[str]:
        """What annotations of the task name: answer labels (question) or choice ids (survey)."""
        return list(self.shown_choices()) if self.task_type == "survey" else list(self.classes)

    def tasks(self) -> dict:
        if self.task_type == "survey":
            return {TASK_KEY: self.survey()}
        answers = [{"label": name} for name in self.classes]
        return {TASK_KEY: {"type": "single", "question": self.question, "help": "", "required": True,
                           "answers": answers}}

    def survey(self) -> dict:
        """A survey task with one choice per table entry and no follow-up questions or filters, in the fields
        of the front-end's SurveyTask model (front-end-monorepo lib-classifier plugins/tasks/survey)."""
        choices = {
            str(cid): {"label": str(c.get("label") or c["class"]), "description": str(c.get("description") or ""),
                       "images": [], "characteristics": {}, "confusions": {}, "confusionsOrder": [],
                       "noQuestions": True}
            for cid, c in self.shown_choices().items()
        }
        return {"type": "survey", "required": True, "characteristics": {}, "characteristicsOrder": [],
                "choices": choices, "choicesOrder": list(choices), "questions": {}, "questionsOrder": [],
                "questionsMap": {}, "images": {}, "inclusions": [], "exclusions": [], "thumbnails": "default"}

    def retirement(self) -> dict:
        return {"criteria": "classification_count", "options": {"count": int(self.retirement_count)}}


def version_texts(versions: Any) -> tuple[str, ...] | None:
    """Config ``campaign.workflow.versions`` (null, a version or a list of them) as text; None = the current one.

    A version is text: YAML and the command line read an unquoted ``13.10`` as the number 13.1, another version,
    so a number with a decimal point is refused, with how to quote it. A whole number is a major version.
    """
    if versions is None:
        return None
    items = [versions] if isinstance(versions, (str, int, float)) else list(versions)
    floats = [v for v in items if isinstance(v, float)]
    if floats:
        raise ValueError(f"campaign.workflow.versions has the number {floats[0]!r}, but a workflow version is text "
                         "(13.10 is not 13.1): quote it as written, versions: \"13.10\" in YAML or "
                         "'campaign.workflow.versions=\"13.10\"' on the command line")
    return tuple(str(v).strip() for v in items)


def workflow_options(task: Mapping[str, Any]) -> list[str]:
    """A workflow task's options as annotations name them: answer labels (question) or choice ids (survey)."""
    if task.get("type") == "survey":
        return [str(c) for c in task.get("choicesOrder") or task.get("choices") or []]
    return [str(a.get("label")) for a in task.get("answers") or []]


def find_project(spec: ProjectSpec, owner: str | None) -> Project | None:
    """The owner's project with this display name, if there is one (``owner`` None: the logged-in account's).

    Zooniverse splits every filter value on commas, so a name with a comma cannot be a filter: then the
    owner's projects are read page by page and the name compared here. Those pages are asked for one by one
    with the owner filter each time: the server's own ``next_href`` leaves the owner filter out (the
    controller takes it out of the params), so following it would list everybody's projects."""
    owned = {"owner": owner} if owner else {"current_user_roles": "owner"}
    if "," not in spec.display_name:
        return next((p for p in Project.where(display_name=spec.display_name, **owned)
                     if p.display_name == spec.display_name), None)
    client = Panoptes.client()
    page: int | None = 1
    while page:
        body, _ = client.get("/projects", params={**owned, "page": page, "page_size": 100}, retry=True)
        found = next((p for p in body["projects"] if p["display_name"] == spec.display_name), None)
        if found is not None:
            return Project.find(found["id"])
        page = body["meta"]["projects"]["next_page"]
    return None


def ensure_project(spec: ProjectSpec, owner: str | None) -> tuple[Project, bool]:
    """Find the project by display name or create it, live or not as ``spec`` says; returns (project, created)."""
    project = find_project(spec, owner)
    created = project is None
    if created:
        project = Project()
        project.display_name = spec.display_name
        project.description = spec.description
        project.primary_language = spec.primary_language
        project.private = bool(spec.private)
        project.save()
        log.info("created project %s (%s)", project.id, spec.display_name)
    set_live(project, spec.live)
    return project, created


def find_workflow(project: Project, display_name: str) -> Workflow | None:
    return next((w for w in Workflow.where(project_id=project.id) if w.display_name == display_name), None)


def ensure_workflow(project: Project, spec: WorkflowSpec) -> tuple[Workflow, bool]:
    """Find the project's workflow by display name or create it; returns (workflow, created).

    An existing workflow whose task type or options (answers, survey choices) differ from the config is an
    error, not silently changed: classifications already made refer to answer positions and choice ids.
    """
    workflow = find_workflow(project, spec.display_name)
    if workflow is not None:
        task = workflow.tasks.get(TASK_KEY, {})
        options = workflow_options(task)
        if (task.get("type"), options) != (spec.task_type, spec.options()):
            where = "campaign.workflow.choices" if spec.task_type == "survey" else "campaign.workflow.classes"
            raise ValueError(
                f"workflow {workflow.id} ({spec.display_name!r}) {task.get('type')} task options {options} differ from "
                f"{where} {spec.options()} ({spec.task_type}); use another workflow name or the same classes"
            )
        return workflow, False
    workflow = Workflow()
    workflow.links.project = project
    workflow.display_name = spec.display_name
    workflow.primary_language = "en"
    workflow.tasks = spec.tasks()
    workflow.first_task = TASK_KEY
    workflow.retirement = spec.retirement()
    workflow.save()
    activate(workflow)
    log.info("created workflow %s (%s): a %s task with %d options", workflow.id, spec.display_name, spec.task_type,
             len(spec.options()))
    return workflow, True


def activate(workflow: Workflow) -> None:
    """Make a new workflow active: on a live project Zooniverse creates it inactive (``workflows_controller.rb``
    ``build_resource_for_create``), and an inactive workflow is offered to no volunteer and left out of the
    project's counts."""
    client = Panoptes.client()
    current, etag = client.get(f"/workflows/{workflow.id}")  # the workflow's own ETag: the update needs If-Match
    if not current["workflows"][0].get("active"):
        client.put(f"/workflows/{workflow.id}", json={"workflows": {"active": True}}, etag=etag)
        workflow.reload()
        log.info("workflow %s made active (a live project's new workflows start inactive)", workflow.id)


def find_subject_set(project: Project, display_name: str) -> SubjectSet | None:
    """The project's subject set with this display name: by a ``display_name`` filter, or, for a name with a
    comma (which Zooniverse splits filter values on), among all the project's sets."""
    named = {"display_name": display_name} if "," not in display_name else {}
    return next((s for s in SubjectSet.where(project_id=project.id, **named) if s.display_name == display_name), None)


def ensure_subject_set(project: Project, display_name: str) -> tuple[SubjectSet, bool]:
    """Find the project's subject set by display name or create it; returns (set, created)."""
    subject_set = find_subject_set(project, display_name)
    if subject_set is not None:
        return subject_set, False
    subject_set = SubjectSet()
    subject_set.links.project = project
    subject_set.display_name = display_name
    subject_set.save()
    log.info("created subject set %s (%s)", subject_set.id, display_name)
    return subject_set, True


def link_subject_set(workflow: Workflow, subject_set: SubjectSet) -> None:
    """Link the set to the workflow unless it already is (the client skips known links itself)."""
    if str(subject_set.id) not in {str(s) for s in workflow.raw.get("links", {}).get("subject_sets", [])}:
        workflow.add_subject_sets(subject_set)


def subject_set_members(subject_set_id: str | int) -> list[str]:
    """Ids of the subjects in a set, read from the set-member list (one paged request per 100); deleted subjects
    included: Zooniverse deactivates a deleted subject and leaves it in its sets."""
    return [str(m.raw["links"]["subject"]) for m in SetMemberSubject.where(subject_set_id=subject_set_id, page_size=100)]


def set_subject_count(subject_set_id: str | int) -> int:
    """How many subjects a set holds that were not deleted (one request: the subject list's ``count``). Not the
    set-member list: a subject deleted on Zooniverse is deactivated and stays a member of its sets."""
    body, _ = Panoptes.client().get("/subjects", params={"subject_set_id": str(subject_set_id), "page_size": 1},
                                    retry=True)
    return int(body["meta"]["subjects"]["count"])


def retired_on_server(workflow: Workflow, subject_ids: Sequence[str]) -> dict[str, str | None]:
    """The subjects of this list that Zooniverse has retired for the workflow, with their retirement reason
    (subject workflow statuses, 100 subjects per request)."""
    retired: dict[str, str | None] = {}
    for start in range(0, len(subject_ids), 100):
        chunk = ",".join(map(str, subject_ids[start : start + 100]))
        for status in SubjectWorkflowStatus.where(subject_ids=chunk, workflow_id=workflow.id, page_size=100):
            if status.raw.get("retired_at"):
                retired[str(status.raw["links"]["subject"])] = status.raw.get("retirement_reason")
    return retired


class UploadLimitError(RuntimeError):
    """The account may not upload the subjects a job needs (Zooniverse's per-user subject limit)."""


def check_upload_room(needed: int) -> None:
    """Refuse, before any write, an upload of ``needed`` new subjects the account's limit cannot take.

    ``GET /api/me`` gives ``uploaded_subjects_count`` (every subject the account ever made, deleted ones
    included) and ``subject_limit`` (the real ``UserSerializer``, ``subjects_controller.rb``
    ``check_subject_limit``). An account login without a user (client credentials) has no ``/me``; the
    server's own 403 then stops the upload.
    """
    if needed <= 0:
        return
    try:
        body, _ = Panoptes.client().get("/me")
    except PanoptesAPIException as err:
        log.info("could not read the account's upload limit (%s); the upload relies on the server's check", err)
        return
    user = (body.get("users") or [{}])[0]
    count, limit = user.get("uploaded_subjects_count"), user.get("subject_limit")
    if count is None or limit is None:
        return
    if int(count) + needed > int(limit):
        raise UploadLimitError(
            f"this upload needs {needed} new subjects but the account has uploaded {count} of the {limit} Zooniverse "
            f"allows (deleted subjects count too); nothing was uploaded. Ask the Zooniverse team to raise the limit, "
            f"or upload a smaller batch (al.batch_size)")


def set_live(project: Project, live: bool) -> bool:
    """Make the project live (Zooniverse counts classifications and retires by count) or not; True if changed.

    ``live`` is set by a project update only (``project_update_schema.rb``; the create schema lacks it).
    """
    client = Panoptes.client()
    current, etag = client.get(f"/projects/{project.id}")  # the project's own ETag: the update needs If-Match
    if bool(current["projects"][0].get("live")) == bool(live):
        return False
    client.put(f"/projects/{project.id}", json={"projects": {"live": bool(live)}}, etag=etag)
    project.reload()
    log.info("project %s is now %s", project.id, "live" if live else "not live (in development)")
    return True


def add_testers(project: Project, user_ids: Sequence[str]) -> int:
    """Give these accounts the ``tester`` role on the project (they may then see and classify it while it is
    private), as an owner invites testers; accounts that already have a role are left alone. Returns how
    many were added."""
    return grant_roles(project, user_ids, ["tester"])


def grant_roles(project: Project, user_ids: Sequence[str], roles: Sequence[str]) -> int:
    """Give these accounts ``roles`` on the project, as its owner does in the project builder (``POST
    /api/project_roles``, the real ``project_roles_controller.rb``); accounts that already have a role are left
    alone. Returns how many were added."""
    client = Panoptes.client()
    have = set(project_roles(project.id))
    added = 0
    for user_id in user_ids:
        if str(user_id) in have:
            continue
        client.post("/project_roles", json={"project_roles": {
            "roles": list(roles), "links": {"project": str(project.id), "user": str(user_id)}}})
        added += 1
    return added


def project_roles(project_id: str | int) -> dict[str, list[str]]:
    """Each account's roles on the project (user id -> role names), from ``GET /api/project_roles``."""
    return {str(role.raw["links"]["owner"]["id"]): list(role.raw.get("roles") or [])
            for role in ProjectRole.where(project_id=project_id, page_size=100)}


# -- lookups and bulk reads shared by the management jobs (export, dedupe, update_metadata) -------------
def resolve_project(project_id: str | int | None, display_name: str | None, owner: str | None) -> Project:
    """The project with this id, else the owner's project with this display name (e.g. the campaign's).

    Raises ``LookupError`` saying what was looked for, so a wrong id or name fails before any write.
    """
    if project_id:
        try:
            return Project.find(project_id)
        except PanoptesAPIException as err:
            raise LookupError(f"project {project_id} not found or not visible to you ({err})") from None
    if not display_name:
        raise LookupError("no project given: set job.project_id, or job.project_name (default: the campaign project)")
    project = find_project(ProjectSpec(display_name=display_name, description=""), owner)
    if project is None:
        # "the logged-in account", not its login: on Zooniverse that is PANOPTES_USERNAME, kept out of logs
        raise LookupError(f"no project named {display_name!r} owned by the logged-in account; "
                          "run job=init_project or set job.project_id")
    return project


def check_subject_set_choice(subject_set_id: str | int | None, subject_set_name: str | None) -> None:
    """A job names its subject set by id or by name, never both or neither (checked before connecting)."""
    if bool(subject_set_id) == bool(subject_set_name):
        raise ValueError(f"give exactly one of job.subject_set_id and job.subject_set_name "
                         f"(got {subject_set_id!r} and {subject_set_name!r})")


def resolve_subject_set(subject_set_id: str | int | None, subject_set_name: str | None,
                        project_id: str | int | None, project_name: str | None, owner: str | None) -> SubjectSet:
    """The subject set with this id, else the one with this name in the (resolved) project."""
    check_subject_set_choice(subject_set_id, subject_set_name)
    if subject_set_id:
        try:
            return SubjectSet.find(subject_set_id)
        except PanoptesAPIException as err:
            raise LookupError(f"subject set {subject_set_id} not found or not visible to you ({err})") from None
    project = resolve_project(project_id, project_name, owner)
    subject_set = find_subject_set(project, subject_set_name)
    if subject_set is None:
        raise LookupError(f"project {project.id} ({project.display_name!r}) has no subject set named {subject_set_name!r}")
    return subject_set


def set_subjects(subject_set_id: str | int) -> list[Subject]:
    """Every subject of a set with its metadata, in pages of 100 (one request per page, not one per subject)."""
    return list(Subject.where(subject_set_id=subject_set_id, page_size=100))


def unlink_subjects(subject_set_id: str | int, subject_ids: Sequence[str]) -> None:
    """Remove subjects from a set in one request (keep it to about 100 ids: they go in the URL).

    A raw link DELETE: ``SubjectSet.remove`` would first GET the membership of every subject, which the
    caller already knows from listing the set.
    """
    Panoptes.client().delete(f"/subject_sets/{subject_set_id}/links/subjects/{','.join(map(str, subject_ids))}",
                             retry=True)


def delete_subject(subject_id: str | int) -> None:
    """Delete a subject, or do nothing if it is gone: safe to repeat after a delete whose answer was lost.

    A list query says whether it still exists (no 404 to tell apart from other errors); the DELETE sends
    the subject's own ETag, which the real server insists on.
    """
    client = Panoptes.client()
    listed, _ = client.get("/subjects", params={"id": str(subject_id)})
    if listed["subjects"]:
        _, etag = client.get(f"/subjects/{subject_id}")
        client.delete(f"/subjects/{subject_id}", etag=etag)


def metadata_json(value: object) -> str:
    """A metadata value as compact, key-sorted JSON: how reports show values and how equal values are found.

    JSON keeps the type visible (``"3"`` is a string, ``3`` a number), so a report never hides a type change.
    """
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
