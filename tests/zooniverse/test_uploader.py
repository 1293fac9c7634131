"""The upload engine end to end against the embedded Panoptes: what the server holds afterwards is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from panoptes_client import Panoptes
from panoptes_client.panoptes import PanoptesAPIException
from PIL import Image

from glitchrun.csvio import read_csv, write_csv
from glitchrun.zooniverse.manifest import Manifest, read_manifest
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    ensure_project,
    ensure_subject_set,
)
from glitchrun.zooniverse.uploader import KEY_FIELD, SubjectUploader, Upload

IMAGES = 4


def write_manifest(folder: Path, subjects: int, images: int = IMAGES) -> Path:
    """``subjects`` rows of ``images`` distinct small PNGs, with visible and hidden metadata."""
    rng = np.random.default_rng(subjects)
    rows = []
    for i in range(subjects):
        row: dict[str, Any] = {"candidate_id": f"g{i:03d}"}
        for j in range(images):
            row[f"image_{j}"] = name = f"g{i:03d}_{j}.png"
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / name)
        row |= {"ifo": "H1" if i % 2 else "L1", "snr": f"{10 + i / 3:.3f}", "#truth": "Blip"}
        rows.append(row)
    return write_csv(pd.DataFrame(rows), folder / "manifest.csv")


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    (tmp_path / "subjects").mkdir()
    return read_manifest(write_manifest(tmp_path / "subjects", 40), "candidate_id")


def head(manifest: Manifest, rows: int) -> Manifest:
    """The manifest's first ``rows`` subjects, as the same manifest of fewer rows would give."""
    return Manifest.from_frame(manifest.frame.iloc[:rows].reset_index(drop=True), "candidate_id", manifest.base_dir)


def project_and_set(name: str = "initial") -> tuple[str, str]:
    project, _ = ensure_project(ProjectSpec("Upload test", "testing uploads"), None)
    subject_set, _ = ensure_subject_set(project, name)
    return str(project.id), str(subject_set.id)


def server_subjects(**filters: str) -> list[dict[str, Any]]:
    """Subjects as the server lists them (all pages), independent of the engine's own listing code."""
    client = Panoptes.client()
    found, path, params = [], "/subjects", {**filters, "page_size": 100}
    while path:
        page, _ = client.get(path, params=params)
        found += page["subjects"]
        path, params = page["meta"]["subjects"]["next_href"], {}
    return found


def assert_set_holds_manifest(subject_set_id: str, manifest: Manifest) -> dict[str, str]:
    """Each key exactly once, its metadata as in the manifest, every media file's bytes equal; key -> id."""
    subjects = server_subjects(subject_set_id=subject_set_id)
    keys = [s["metadata"][KEY_FIELD] for s in subjects]
    assert sorted(keys) == sorted(manifest.keys), "the set must hold each manifest key exactly once"
    for subject in subjects:
        key = subject["metadata"][KEY_FIELD]
        assert subject["metadata"] == {**manifest.metadata(key), KEY_FIELD: key}
        files = manifest.locations(key)
        assert len(subject["locations"]) == len(files)
        for location, path in zip(subject["locations"], files):
            (mime, url), = location.items()
            assert mime == "image/png"
            assert requests.get(url, timeout=30).content == path.read_bytes()
    return {s["metadata"][KEY_FIELD]: s["id"] for s in subjects}


def test_upload_puts_each_key_once_with_all_media(connection, manifest: Manifest, tmp_path: Path):
    project_id, set_id = project_and_set()
    outcome = SubjectUploader(workers=8).upload(manifest, project_id, set_id, tmp_path / "run")
    assert outcome.ok and outcome.uploaded == manifest.keys
    assert outcome.skipped == outcome.adopted == outcome.failed == []
    ids = assert_set_holds_manifest(set_id, manifest)
    assert outcome.subject_ids == ids
    report = read_csv(tmp_path / "run" / "upload_report.csv", dtype=str)
    assert list(report["status"]) == ["uploaded"] * 40 and list(report["subject_id"]) == [ids[k] for k in manifest.keys]

    again = SubjectUploader().upload(manifest, project_id, set_id, tmp_path / "run2")
    assert again.ok and again.skipped == manifest.keys and again.uploaded == []
    assert len(server_subjects(project_id=project_id)) == 40  # nothing uploaded twice
    assert again.subject_ids == ids


class Crash(BaseException):
    """A kill the engine cannot catch (like Ctrl-C), raised from inside it."""


def test_interrupted_upload_resumes_without_duplicates(connection, manifest: Manifest, tmp_path: Path, monkeypatch):
    project_id, set_id = project_and_set()
    link = Upload.link
    calls = []

    def crash_on_third_link(self: Upload, pairs: list[tuple[str, str]], status: str) -> None:
        calls.append(len(pairs))
        if len(calls) == 3:
            raise Crash("killed between creating subjects and linking them")
        link(self, pairs, status)

    monkeypatch.setattr(Upload, "link", crash_on_third_link)
    with pytest.raises(Crash):
        SubjectUploader(workers=4, link_batch=5).upload(manifest, project_id, set_id, tmp_path / "run1")
    monkeypatch.setattr(Upload, "link", link)

    linked = {s["metadata"][KEY_FIELD]: s["id"] for s in server_subjects(subject_set_id=set_id)}
    created = {s["metadata"][KEY_FIELD]: s["id"] for s in server_subjects(project_id=project_id)}
    assert len(linked) == 10 and 10 < len(created) < 40, "the crash must leave linked, orphaned and missing keys"
    # a create committed by the server whose media never arrived (its answer was lost in the crash)
    last = manifest.keys[-1]
    body = {"subjects": {"locations": ["image/png"] * IMAGES, "metadata": {**manifest.metadata(last), KEY_FIELD: last},
                         "links": {"project": project_id}}}
    incomplete, _ = Panoptes.client().post("/subjects", json=body)
    incomplete_id = incomplete["subjects"][0]["id"]

    outcome = SubjectUploader(workers=4).upload(manifest, project_id, set_id, tmp_path / "run2")
    assert outcome.ok
    assert sorted(outcome.skipped) == sorted(linked)
    assert sorted(outcome.adopted) == sorted(set(created) - set(linked))
    assert sorted(outcome.uploaded) == sorted(set(manifest.keys) - set(created))
    ids = assert_set_holds_manifest(set_id, manifest)
    assert {k: ids[k] for k in created} == created, "complete subjects of the first run are kept, not re-uploaded"
    assert len(server_subjects(project_id=project_id)) == 40
    with pytest.raises(PanoptesAPIException):
        Panoptes.client().get(f"/subjects/{incomplete_id}")


def test_a_subject_of_another_set_is_never_adopted_or_deleted(connection, manifest: Manifest, tmp_path: Path):
    project_id, first_set = project_and_set("first")
    _, second_set = project_and_set("second")
    few = head(manifest, 3)
    first = SubjectUploader().upload(few, project_id, first_set, tmp_path / "run1")
    second = SubjectUploader().upload(few, project_id, second_set, tmp_path / "run2")
    assert first.ok and second.ok and second.uploaded == few.keys
    assert set(first.subject_ids.values()).isdisjoint(second.subject_ids.values())
    assert_set_holds_manifest(first_set, few)


def test_transient_server_faults_are_retried(connection, manifest: Manifest, tmp_path: Path):
    """5xx before and after commit, dropped connections and lost uploads: still each key once, complete.

    Seed 3 fires every kind within its first 10 draws, and 40 subjects make far more draws of each kind,
    so every kind is met however the 8 workers interleave."""
    project_id, set_id = project_and_set()
    connection.server.faults.update(seed=3, error_rate=0.08, error_after_commit_rate=0.08, drop_rate=0.04,
                                    lost_upload_rate=0.1)
    outcome = SubjectUploader(workers=8, retries=8, backoff=0.01).upload(manifest, project_id, set_id, tmp_path / "run")
    injected = connection.server.fault_counts
    connection.server.faults.update(error_rate=0, error_after_commit_rate=0, drop_rate=0, lost_upload_rate=0)
    assert all(injected[kind] > 0 for kind in ("error", "error_after_commit", "drop", "lost_upload")), injected
    assert outcome.ok, outcome
    assert_set_holds_manifest(set_id, manifest)
    assert len(server_subjects(project_id=project_id)) == 40


def test_failures_are_reported_not_fatal(connection, manifest: Manifest, tmp_path: Path):
    few = head(manifest, 3)
    project_id, set_id = project_and_set()
    connection.server.faults.update(lost_upload_rate=1.0)
    outcome = SubjectUploader(retries=1, backoff=0).upload(few, project_id, set_id, tmp_path / "run")
    connection.server.faults.update(lost_upload_rate=0)
    assert not outcome.ok and outcome.failed == few.keys and outcome.subject_ids == {}
    assert server_subjects(project_id=project_id) == [], "incomplete subjects are deleted, not left behind"
    report = read_csv(tmp_path / "run" / "upload_report.csv", dtype=str)
    assert list(report["status"]) == ["failed"] * 3
    assert report["problem"].str.contains("does not hold").all()


def test_verification_fails_on_a_subject_not_in_the_manifest(connection, manifest: Manifest, tmp_path: Path):
    project_id, set_id = project_and_set()
    few = head(manifest, 4)
    first = SubjectUploader().upload(few, project_id, set_id, tmp_path / "run1")
    fewer = head(manifest, 3)
    outcome = SubjectUploader().upload(fewer, project_id, set_id, tmp_path / "run2")
    assert not outcome.ok and outcome.skipped == fewer.keys and outcome.failed == []
    report = read_csv(tmp_path / "run2" / "upload_report.csv", dtype=str)
    extra = report.iloc[-1]
    assert (extra["key"], extra["status"], extra["problem"]) == (few.keys[-1], "unexpected", "in the set but not in the manifest")
    assert extra["subject_id"] == first.subject_ids[few.keys[-1]]


def post_orphan(project_id: str, manifest: Manifest, key: str) -> str:
    """A subject of ``key`` in no set whose media never arrived, as an interrupted run leaves it; its id."""
    body = {"subjects": {"locations": ["image/png"] * IMAGES, "metadata": {**manifest.metadata(key), KEY_FIELD: key},
                         "links": {"project": project_id}}}
    created, _ = Panoptes.client().post("/subjects", json=body)
    return created["subjects"][0]["id"]


def refuse_to_delete(monkeypatch: pytest.MonkeyPatch, subject_id: str) -> None:
    delete = Upload.delete

    def failing(self: Upload, target: str) -> None:
        if str(target) == str(subject_id):
            raise requests.ConnectionError(f"injected: DELETE of subject {target} lost its connection")
        delete(self, target)

    monkeypatch.setattr(Upload, "delete", failing)


def test_a_key_whose_orphan_cannot_be_deleted_waits(connection, manifest: Manifest, tmp_path: Path, monkeypatch):
    few = head(manifest, 3)
    project_id, set_id = project_and_set()
    key = few.keys[0]
    orphan = post_orphan(project_id, few, key)
    refuse_to_delete(monkeypatch, orphan)
    outcome = SubjectUploader(retries=1, backoff=0).upload(few, project_id, set_id, tmp_path / "run1")
    assert not outcome.ok and outcome.failed == [key] and outcome.uploaded == few.keys[1:]
    holders = [s["id"] for s in server_subjects(project_id=project_id) if s["metadata"][KEY_FIELD] == key]
    assert holders == [orphan], "no second subject beside the orphan that could not be deleted"
    report = read_csv(tmp_path / "run1" / "upload_report.csv", dtype=str)
    assert "could not be deleted" in report.set_index("key").loc[key, "problem"]

    monkeypatch.undo()  # the server lets it go now: the re-run deletes it and uploads the key
    again = SubjectUploader().upload(few, project_id, set_id, tmp_path / "run2")
    assert again.ok and again.uploaded == [key] and again.skipped == few.keys[1:]
    assert_set_holds_manifest(set_id, few)
    assert len(server_subjects(project_id=project_id)) == 3


def test_an_orphan_beside_a_key_in_the_set_fails_verification(connection, manifest: Manifest, tmp_path: Path,
                                                              monkeypatch):
    few = head(manifest, 3)
    project_id, set_id = project_and_set()
    assert SubjectUploader().upload(few, project_id, set_id, tmp_path / "run1").ok
    key = few.keys[1]
    orphan = post_orphan(project_id, few, key)
    refuse_to_delete(monkeypatch, orphan)
    outcome = SubjectUploader(retries=1, backoff=0).upload(few, project_id, set_id, tmp_path / "run2")
    assert not outcome.ok and outcome.failed == [key] and outcome.uploaded == outcome.adopted == []
    report = read_csv(tmp_path / "run2" / "upload_report.csv", dtype=str)
    assert f"subjects outside the set still carry its key: ['{orphan}']" in report.set_index("key").loc[key, "problem"]

    monkeypatch.undo()
    again = SubjectUploader().upload(few, project_id, set_id, tmp_path / "run3")
    assert again.ok and again.skipped == few.keys
    assert_set_holds_manifest(set_id, few)
    assert len(server_subjects(project_id=project_id)) == 3
