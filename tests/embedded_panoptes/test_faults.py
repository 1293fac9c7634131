"""Fault injection: each kind fires as configured, can be switched at run time and is counted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from panoptes_client import Panoptes, Project, Subject
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import make_project, make_subjects

PROJECT = {"projects": {"display_name": "Fault hunt", "description": "d", "primary_language": "en", "private": False}}


def test_a_write_is_committed_then_answered_503(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    server.faults.update(error_after_commit_rate=1.0)
    with pytest.raises(PanoptesAPIException, match="status code 503"):
        owner.post("/projects", json=PROJECT)  # a plain POST: the client does not retry it
    assert [p.display_name for p in Project.where(display_name="Fault hunt")] == ["Fault hunt"]  # GETs unaffected
    assert server.fault_counts["error_after_commit"] == 1
    with pytest.raises(PanoptesAPIException, match="Display name Must be unique for owner"):  # a 4xx answer passes through unchanged
        owner.post("/projects", json=PROJECT)
    assert server.fault_counts["error_after_commit"] == 1


def test_errors_drops_and_latency(tmp_path: Path) -> None:
    with EmbeddedPanoptes(tmp_path / "panoptes", faults={"error_rate": 1.0}) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            with pytest.raises(PanoptesAPIException, match="status code 503"):
                client.post("/projects", json=PROJECT)
            server.faults.update(error_rate=0.0, drop_rate=1.0)
            with pytest.raises(requests.exceptions.ConnectionError):
                client.post("/projects", json=PROJECT)
            server.faults.update(drop_rate=0.0, latency_ms=300)
            started = time.monotonic()
            assert list(Project.where()) == []  # neither faulty request made anything
            assert time.monotonic() - started >= 0.3
        assert server.fault_counts["error"] == 1 and server.fault_counts["drop"] == 1
        assert server.fault_counts["latency"] >= 1


def test_a_lost_upload_is_acknowledged_but_not_stored(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    project = make_project()
    server.faults.update(lost_upload_rate=1.0)
    (subject,) = make_subjects(project, 1)
    assert subject.async_save_result  # the client saw a successful upload
    url = Subject.find(subject.id).locations[0]["image/png"]
    assert requests.get(url, timeout=10).status_code == 404
    assert server.fault_counts["lost_upload"] == 1


def test_a_seed_makes_the_same_faults_whatever_else_is_drawn(tmp_path: Path) -> None:
    """Each kind draws from its own stream, so other kinds' draws in between (here lost uploads, as another
    thread's would be) do not move it: a seeded multi-threaded run is sure to meet the faults it reaches."""

    def failures(seed: int, uploads_between: bool) -> list[bool]:
        with EmbeddedPanoptes(tmp_path / f"seed{seed}-{time.monotonic_ns()}",
                              faults={"seed": seed, "error_rate": 0.5, "lost_upload_rate": 0.5}) as server:
            answers = []
            for index in range(20):
                if uploads_between:
                    requests.put(f"{server.endpoint}/upload/{index}.png", data=b"x", timeout=10)
                answers.append(requests.get(f"{server.endpoint}/api/projects", timeout=10).status_code == 503)
            assert server.fault_counts["lost_upload"] > 0 or not uploads_between
            return answers

    first, second = failures(7, uploads_between=False), failures(7, uploads_between=True)
    assert first == second and any(first) and not all(first)


def test_unknown_or_out_of_range_settings_are_refused(server: EmbeddedPanoptes) -> None:
    with pytest.raises(ValueError, match="unknown fault setting"):
        server.faults.update(error_ratio=0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        server.faults.update(drop_rate=2)
