"""Fixtures of the embedded Panoptes tests: a running server, its owner account and PNG bytes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from panoptes_client import Panoptes, Project, SubjectSet, Workflow

from glitchrun.embedded_panoptes import EmbeddedPanoptes

CLASSES = ["Blip", "Whistle", "Koi_Fish", "None_of_the_Above"]


def png_bytes(seed: int, size: int = 4) -> bytes:
    """A valid ``size``×``size`` grey PNG whose pixels depend on ``seed`` (libmagic says image/png)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedPanoptes]:
    with EmbeddedPanoptes(tmp_path / "panoptes") as running:
        yield running


@pytest.fixture
def owner(server: EmbeddedPanoptes) -> Iterator[Panoptes]:
    """A client logged in as ``alice``, the owner of everything the tests create."""
    _, password = server.ensure_user("alice")
    with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
        yield client


def make_project(name: str = "Glitch hunt", private: bool = False) -> Project:
    project = Project()
    project.display_name = name
    project.description = "Classify glitches"
    project.primary_language = "en"
    project.private = private
    project.save()
    return project


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
