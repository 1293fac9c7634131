"""Credentials never leave the environment: every job run as ``python -m glitchrun`` with marker strings in
PANOPTES_USERNAME/PASSWORD/CLIENT_ID/CLIENT_SECRET, on the embedded backend and on ``backend=zooniverse``
pointed at an embedded server where the markers really log in; then no file under the outputs folder
(logs, .hydra/*.yaml, reports, manifests, CSVs, SQLite) and no byte of the runs' stdout and stderr
(tracebacks included) holds a marker.

A credential typed on the command line is another matter: Hydra records every override in
``.hydra/overrides.yaml``, ``config.yaml`` and ``hydra.yaml`` before any job code runs, so glitchrun's
Hydra callback (glitchrun.guard) refuses credential-like keys before anything is written. The last tests
pin down what happens, so RELIABILITY.md can say it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import database, write_manifest

MARKERS = {var: f"marker{uuid.uuid4().hex}" for var in
           ("PANOPTES_USERNAME", "PANOPTES_PASSWORD", "PANOPTES_CLIENT_ID", "PANOPTES_CLIENT_SECRET")}
USER_VARS = ("PANOPTES_USERNAME", "PANOPTES_PASSWORD")
SMALL_ROUND = ["data.n=600", "al.batch_size=4", "images.size=[160,120]", "images.durations=[1.0]", "images.n_jobs=1",
               "images.progress=false"]
#: jobs that run on the embedded backend only (they refuse backend=zooniverse, before connecting)
LOCAL_ONLY = {"crowd", "simulate"}


@dataclass
class Run:
    job: str
    returncode: int
    output: bytes  # stdout and stderr


def glitchrun(outputs: Path, env: dict[str, str], job: str, *overrides: str) -> Run:
    done = subprocess.run([sys.executable, "-m", "glitchrun", f"job={job}", f"paths.outputs={outputs}",
                           "campaign.retirement.max_votes=2", "campaign.workflow.retirement_count=3", "backend.backoff=0.01",
                           *overrides],
                          capture_output=True, timeout=300, cwd=outputs.parent, env=env)
    return Run(job, done.returncode, done.stdout + done.stderr)


def every_job(outputs: Path, env: dict[str, str], backend: list[str], manifest: Path, csv: Path) -> list[Run]:
    """Every job, in campaign order (each needs what the ones before made)."""
    steps = [
        ("init_project", [f"job.manifest={manifest}"]),
        ("al_round", SMALL_ROUND),
        ("crowd", ["job.progress=false"]),
        ("export_request", []),
        ("export_download", []),
        ("ingest", []),
        ("dedupe", ["job.subject_set_name=initial"]),
        ("update_metadata", [f"job.csv={csv}", "job.subject_set_name=initial", "job.key_column=candidate_id"]),
        ("simulate", ["job.rounds=1", *SMALL_ROUND]),
    ]
    return [glitchrun(outputs, env, job, *backend, *overrides) for job, overrides in steps]


@dataclass
class Campaigns:
    """The runs of every job on each backend, their outputs folders, and the zooniverse stand-in's storage."""

    runs: dict[str, list[Run]]
    outputs: dict[str, Path]
    zooniverse_storage: Path


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaigns]:
    root = tmp_path_factory.mktemp("secrets")
    manifest = write_manifest(root / "subjects", 3)
    csv = root / "updates.csv"
    pd.DataFrame({"candidate_id": ["g0000", "g0001"], "ifo": ["V1", "V1"]}).to_csv(csv, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")} | MARKERS
    password_only = {k: v for k, v in env.items() if k not in ("PANOPTES_CLIENT_ID", "PANOPTES_CLIENT_SECRET")}
    with EmbeddedPanoptes(root / "zooniverse") as zooniverse:  # where backend=zooniverse logs in
        zooniverse.ensure_user(MARKERS["PANOPTES_USERNAME"], MARKERS["PANOPTES_PASSWORD"])
        zooniverse.add_client_app(MARKERS["PANOPTES_CLIENT_ID"], MARKERS["PANOPTES_CLIENT_SECRET"],
                                  MARKERS["PANOPTES_USERNAME"])
        remote = ["backend=zooniverse", f"backend.endpoint={zooniverse.endpoint}"]
        outputs = {name: root / name / "outputs" for name in ("local", "zooniverse", "zooniverse-password")}
        for folder in outputs.values():
            folder.mkdir(parents=True)
        with ThreadPoolExecutor(2) as pool:  # the two campaigns are independent: one per core
            local = pool.submit(every_job, outputs["local"], env, [], manifest, csv)
            client_credentials = pool.submit(every_job, outputs["zooniverse"], env, remote, manifest, csv)
            runs = {"local": local.result(), "zooniverse": client_credentials.result()}
        # the user-and-password login, which the client-credentials pair above takes precedence over
        runs["zooniverse-password"] = [glitchrun(outputs["zooniverse-password"], password_only, "export_request",
                                                 *remote)]
        yield Campaigns(runs, outputs, root / "zooniverse")


@pytest.mark.parametrize("campaign", ["local", "zooniverse", "zooniverse-password"])
def test_every_job_ran(campaigns: Campaigns, campaign: str) -> None:
    for run in campaigns.runs[campaign]:
        refused = campaign != "local" and run.job in LOCAL_ONLY
        # without the (local-only) simulated crowd there is nothing to ingest, which is an error, not a success
        empty = campaign != "local" and run.job == "ingest"
        assert (run.returncode != 0) == (refused or empty), f"{run.job} on {campaign}: {run.output.decode()[-2000:]}"
        if refused:
            assert b"backend=local" in run.output
        if empty:
            assert b"no classification of workflow" in run.output and run.returncode == 2


def test_zooniverse_jobs_really_logged_in_as_the_marker_user(campaigns: Campaigns) -> None:
    with database(campaigns.zooniverse_storage) as db:
        owners = {row[0] for row in db.execute("SELECT u.login FROM projects p JOIN users u ON u.id = p.owner_id")}
    assert owners == {MARKERS["PANOPTES_USERNAME"]}


@pytest.mark.parametrize("campaign", ["local", "zooniverse", "zooniverse-password"])
def test_no_marker_in_any_output_file_or_stream(campaigns: Campaigns, campaign: str) -> None:
    files = [path for path in campaigns.outputs[campaign].rglob("*") if path.is_file()]
    assert len(files) > (20 if campaign != "zooniverse-password" else 3)
    assert any(path.name == "glitchrun.log" for path in files) and any(path.suffix == ".yaml" for path in files)
    for marker in MARKERS.values():
        for path in files:
            assert marker.encode() not in path.read_bytes(), f"{marker} is in {path}"
        for run in campaigns.runs[campaign]:
            assert marker.encode() not in run.output, f"{marker} is in the output of {run.job}"


def test_a_credential_given_as_an_override_is_refused_before_hydra_saves_it(tmp_path: Path) -> None:
    """With "+" Hydra would save the value in three files of .hydra/: glitchrun stops the run first."""
    outputs = tmp_path / "outputs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")}
    marker = f"marker{uuid.uuid4().hex}"
    added = glitchrun(outputs, env, "init_project", f"+password={marker}")
    assert added.returncode != 0
    assert b"refusing to run: password" in added.output and marker.encode() not in added.output
    assert not outputs.exists()

    # without "+" Hydra refuses the key before making a run folder; the message names the key, not the value
    elsewhere = tmp_path / "refused"
    refused = glitchrun(elsewhere, env, "init_project", f"password={marker}")
    assert refused.returncode != 0 and b"password is not a setting of the config" in refused.output
    assert marker.encode() not in refused.output and not elsewhere.exists()
