"""Builders shared by the embedded Panoptes tests: PNG bytes, a project, a glitch workflow, a subject set,
subjects with uploads and classifications, all made through panoptes-client."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import datetime, timezone

from panoptes_client import Panoptes, Project, Subject, SubjectSet, Workflow

CLASSES = ["Blip", "Whistle", "Koi_Fish", "None_of_the_Above"]
#: what panoptes-client sends with every /api request: the real server routes its API by this Accept value
#: (``config/routes.rb``), so a raw request without it finds no route (404)
API = {"Accept": "application/vnd.api+json; version=1"}


def png_bytes(seed: int, size: int = 4) -> bytes:
    """A valid ``size`` x ``size`` grey PNG whose pixels depend on ``seed`` (libmagic says image/png)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_project(name: str = "Glitch hunt", private: bool = False) -> Project:
    project = Project()
    project.display_name = name
    project.description = "Classify glitches"
    project.primary_language = "en"
    project.private = private
    project.save()
    return project


def go_live(project: Project) -> Project:
    """Make the project live: only a project update may (app/schemas/project_update_schema.rb has ``live``,
    the create schema does not), and only a live project counts classifications."""
    fresh = Project.find(project.id)
    Panoptes.client().put(f"/projects/{project.id}", json={"projects": {"live": True}}, etag=fresh.etag)
    return Project.find(project.id)


def make_workflow(project: Project, retirement_count: int = 2) -> Workflow:
    """A single-question workflow whose answers are glitch classes."""
    workflow = Workflow()
    workflow.links.project = project
    workflow.display_name = "Glitch classes"
    workflow.primary_language = "en"
    workflow.tasks = {"T0": {"type": "single", "question": "Which glitch class is this?", "help": "",
                             "required": True, "answers": [{"label": label} for label in CLASSES]}}
    workflow.first_task = "T0"
    workflow.retirement = {"criteria": "classification_count", "options": {"count": retirement_count}}
    workflow.save()
    return workflow


def make_subject_set(project: Project, name: str = "Batch 1") -> SubjectSet:
    subject_set = SubjectSet()
    subject_set.links.project = project
    subject_set.display_name = name
    subject_set.save()
    return subject_set


def make_subjects(project: Project, count: int, images: int = 1, start: int = 0) -> list[Subject]:
    """``count`` subjects with ``images`` uploaded PNGs each, saved in parallel (``Subject.async_saves``)."""
    subjects = []
    with Subject.async_saves():
        for i in range(start, start + count):
            subject = Subject()
            subject.links.project = project
            for k in range(images):
                subject.add_location(io.BytesIO(png_bytes(i * images + k)))
            subject.metadata.update({"candidate": f"c{i}", "#truth": CLASSES[i % len(CLASSES)]})
            subject.save()
            subjects.append(subject)
    return subjects


def make_campaign(project: Project, count: int) -> tuple[Workflow, SubjectSet, list[Subject]]:
    """A workflow of the project with one subject set of ``count`` new subjects linked to it."""
    workflow = make_workflow(project)
    subject_set = make_subject_set(project)
    subjects = make_subjects(project, count)
    subject_set.add(subjects)
    workflow.add_subject_sets(subject_set)
    return workflow, subject_set, subjects


def classify(client: Panoptes, workflow: Workflow, subject_id: str, answer: int) -> dict:
    """POST one single-question classification as ``client`` (anonymous or logged in)."""
    moment = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {"classifications": {
        "completed": True,
        "annotations": [{"task": "T0", "value": answer}],
        "metadata": {"started_at": moment, "finished_at": moment, "user_agent": "glitchrun-test",
                     "user_language": "en", "workflow_version": workflow.version, "utc_offset": "0",
                     "source": "api"},
        "links": {"project": workflow.raw["links"]["project"], "workflow": workflow.id, "subjects": [subject_id]},
    }}
    with client:
        return client.post("/classifications", json=body)[0]["classifications"][0]
