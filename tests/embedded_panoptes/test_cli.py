"""The official ``panoptes`` CLI, unchanged, in a subprocess against the server.

The CLI ignores ``PANOPTES_*`` variables for the endpoint and the account (it passes its own config's
values, default zooniverse.org, to the client), and ``panoptes configure`` refuses http endpoints, so the
test writes ``~/.panoptes/config.yml`` itself, in a temporary HOME.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.embedded_panoptes.exports import CLASSIFICATION_COLUMNS

from .helpers import classify, make_project, make_subject_set, make_subjects, make_workflow, png_bytes
from .test_serve import start_serve, stop

PANOPTES = shutil.which("panoptes")
pytestmark = pytest.mark.skipif(PANOPTES is None, reason="the panoptes CLI (panoptescli) is not installed")


def run_cli(home: Path, endpoint: str, *args: str) -> str:
    env = {**os.environ, "HOME": str(home), "PANOPTES_ENDPOINT": endpoint}
    done = subprocess.run([PANOPTES, *args], env=env, capture_output=True, text=True, timeout=60, cwd=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cli_lists_uploads_and_downloads(tmp_path: Path, server: EmbeddedPanoptes, owner: Panoptes) -> None:
    _, password = server.ensure_user("alice")
    home = tmp_path / "home"
    (home / ".panoptes").mkdir(parents=True)
    (home / ".panoptes" / "config.yml").write_text(
        f"endpoint: {server.endpoint}\nusername: alice\npassword: {password}\n")
    project = make_project("CLI hunt", private=True)
    workflow = make_workflow(project, retirement_count=1)
    subject_set = make_subject_set(project)
    workflow.add_subject_sets(subject_set)

    listed = run_cli(home, server.endpoint, "project", "ls").split()
    assert listed == ["*" + project.id, "alice/cli-hunt", "CLI", "hunt"]

    manifest = home / "manifest.csv"
    lines = ["%candidate,image_a,image_b"]
    for i in range(3):
        for suffix, seed in (("a", 2 * i), ("b", 2 * i + 1)):
            (home / f"c{i}{suffix}.png").write_bytes(png_bytes(seed))
        lines.append(f"c{i},c{i}a.png,c{i}b.png")
    manifest.write_text("\n".join(lines) + "\n")
    run_cli(home, server.endpoint, "subject-set", "upload-subjects", subject_set.id, str(manifest))
    assert SubjectSet.find(subject_set.id).metadata == {"indexFields": "candidate"}
    uploaded = sorted(Subject.where(subject_set_id=subject_set.id), key=lambda s: s.metadata["candidate"])
    assert [s.metadata["candidate"] for s in uploaded] == ["c0", "c1", "c2"]
    for i, subject in enumerate(uploaded):
        urls = [location["image/png"] for location in subject.locations]
        assert [requests.get(url, timeout=10).content for url in urls] == [png_bytes(2 * i), png_bytes(2 * i + 1)]

    classify(owner, workflow, uploaded[0].id, 2)
    out = home / "classifications.csv"
    run_cli(home, server.endpoint, "project", "download", "-g", project.id, str(out))
    frame = pd.read_csv(out, dtype=str)
    assert list(frame.columns) == CLASSIFICATION_COLUMNS and list(frame.subject_ids) == [uploaded[0].id]
    assert Project.find(project.id).classifications_count == 0  # stored and exported, not counted: not live


def test_cli_downloads_a_subject_set_classification_export_from_job_serve(tmp_path: Path) -> None:
    """config/routes.rb (subject_sets: POST/GET classifications_export), subject_sets_controller.rb,
    app/models/subject_set.rb#classifications: the set's workflows' classifications of the set's subjects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")}
    process, exports = start_serve(tmp_path, env)
    try:
        endpoint, login, password = (exports[k] for k in ("PANOPTES_ENDPOINT", "PANOPTES_USERNAME",
                                                          "PANOPTES_PASSWORD"))
        with Panoptes(endpoint=endpoint, username=login, password=password) as client:
            project = make_project("Served hunt", private=True)
            workflow = make_workflow(project)
            inside, outside = make_subject_set(project, "inside"), make_subject_set(project, "outside")
            ours, theirs = make_subjects(project, 2)
            inside.add([ours])
            outside.add([theirs])
            workflow.add_subject_sets([inside, outside])
            kept = classify(client, workflow, ours.id, 1)["id"]
            classify(client, workflow, theirs.id, 2)
        home = tmp_path / "home"
        (home / ".panoptes").mkdir(parents=True)
        (home / ".panoptes" / "config.yml").write_text(f"endpoint: {endpoint}\nusername: {login}\npassword: {password}\n")
        out = home / "set.csv"
        run_cli(home, endpoint, "subject-set", "download-classifications", "-g", inside.id, str(out))
        frame = pd.read_csv(out, dtype=str)
        assert list(frame.columns) == CLASSIFICATION_COLUMNS
        assert list(frame.classification_id) == [kept] and list(frame.subject_ids) == [ours.id]
    finally:
        stop(process, signal.SIGINT)
