"""The jobs that write to Zooniverse, run as a user runs them (the composed config, ``backend.faults.*``
overrides) against an embedded Panoptes that answers 503, commits writes then answers 503, drops
connections, loses media uploads, adds latency and lets tokens expire. A failed run is simply run again,
as a user would. After every run, and at the end, the server's own database must show no duplicated,
lost, half-made or half-updated subject.

Retries are short here (``backend.retries/backoff``, ``uploader.*``, the jobs' own ``retries/backoff``)
so that hundreds of faults take seconds; nothing reaches panoptes-client's own ~40 s retries, which the
backend's client replaces.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from panoptes_client import Workflow

from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.exports import read_export
from glitchrun.zooniverse.manifest import read_manifest
from glitchrun.zooniverse.resources import ProjectSpec, ensure_subject_set, find_project
from glitchrun.zooniverse.uploader import KEY_FIELD
from tests.embedded_panoptes.helpers import classify
from tests.jobs.conftest import PROJECT

from .conftest import Calls, Ledger, RunJob, SeedCampaign, Tally
from .helpers import Stored, database, read_store, write_manifest

FAULTS = {"error_rate": 0.1, "error_after_commit_rate": 0.1, "drop_rate": 0.05, "lost_upload_rate": 0.2}
FAST = ["backend.retries=5", "backend.backoff=0.01", "uploader.retries=5", "uploader.backoff=0.01"]
#: runs of a job (the first and the re-runs) within which it must have finished
ATTEMPTS = 6
#: rounds of an operation at most, each on new work, until its test has survived its quota of faults
ROUNDS = 16
#: injected faults (latency excluded) each operation's test must survive; 100 and more in all
QUOTA = {"upload": 40, "metadata": 30, "dedupe": 20, "export": 15}


class Campaign:
    """One operation's runs under faults: re-run after a failure, check the server after every run, count."""

    def __init__(self, run_job: RunJob, ledger: Ledger, storage_dir: Path) -> None:
        self.run_job = run_job
        self.ledger = ledger
        self.storage_dir = storage_dir
        self.runs: Counter[str] = Counter()

    def injected(self) -> int:
        return sum(n for kind, n in self.ledger.faults().items() if kind != "latency")

    def repeat(self, quota: int, one_round: Callable[[int], None]) -> None:
        """``one_round(0)``, ``one_round(1)``, ... (each runs a job until done, and checks) until ``quota`` faults."""
        for number in range(ROUNDS):
            one_round(number)
            if self.injected() >= quota:
                return
        pytest.fail(f"only {self.injected()} faults were injected in {ROUNDS} rounds: {dict(self.ledger.faults())}")

    def until_done(self, job: str, *overrides: str, faults: dict[str, float] = FAULTS,
                   check: Callable[[Stored], None] = lambda stored: None) -> Any:
        """The job's result once a run succeeds; ``check`` sees the server's state after every run."""
        for _ in range(ATTEMPTS):
            seed = self.runs["runs"] + 1  # a new seed per run; runs repeat exactly where a job is single-threaded
            settings = [f"backend.faults.{key}={value}" for key, value in {**faults, "seed": seed}.items()]
            self.runs["runs"] += 1
            try:
                result, _ = self.run_job(job, *FAST, *settings, *overrides, run_dir=f"{job}-{seed}")
            except Exception:  # noqa: BLE001  (any failure: the user runs the job again)
                self.runs["failed runs, resumed"] += 1
                continue
            finally:
                check(read_store(self.storage_dir))
            return result
        pytest.fail(f"{job} did not finish within {ATTEMPTS} runs under faults {faults}")

    def record(self, tally: Tally, operation: str) -> None:
        """Add this test's faults and runs to the session tally."""
        tally[operation].update(self.ledger.faults() + self.runs)


@contextlib.contextmanager
def latency_spikes(ledger: Ledger, spike_ms: float, period: float = 0.2) -> Iterator[None]:
    """Every other ``period`` seconds the running server answers each request ``spike_ms`` late."""
    stop = threading.Event()

    def toggle() -> None:
        high = False
        while not stop.wait(period):
            high = not high
            if ledger.servers:
                ledger.servers[-1].faults.update(latency_ms=spike_ms if high else 0)

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.fixture
def campaign(run_job: RunJob, ledger: Ledger, local_backend: LocalBackend) -> Campaign:
    return Campaign(run_job, ledger, local_backend.storage_dir)


# -- uploads -------------------------------------------------------------------------------------------
def check_upload(stored: Stored, manifest_path: Path, complete: bool) -> None:
    """Every subject in the set shows its key once, with its exact metadata and media; ``complete``: all keys."""
    manifest = read_manifest(manifest_path, "candidate_id")
    members = stored.subjects_of("initial")
    keys = [stored.metadata[sid].get(KEY_FIELD) for sid in members]
    assert len(keys) == len(set(keys)), "a key is in the set twice"
    assert set(keys) <= set(manifest.keys)
    for sid, key in zip(members, keys):
        assert stored.metadata[sid] == {**manifest.metadata(key), KEY_FIELD: key}, f"subject {sid}: metadata"
        files = [path.read_bytes() for path in manifest.locations(key)]
        assert stored.media_bytes(sid) == files, f"subject {sid}: media"
    if complete:
        assert sorted(keys) == sorted(manifest.keys), "a manifest key is missing from the set"
        strays = [sid for sid, meta in stored.metadata.items() if KEY_FIELD in meta and sid not in members]
        assert not strays, f"subjects left outside the set: {strays}"


@pytest.mark.parametrize("variant,overrides,spike_ms", [
    ("faults", [], 0),
    ("tokens expiring", ["backend.token_lifetime=2"], 0),
    ("latency spikes", [], 250),
], ids=["faults", "tokens", "latency"])
def test_uploads_survive_faults(campaign: Campaign, tally: Tally, http_calls: Calls, caplog: pytest.LogCaptureFixture,
                                tmp_path: Path, variant: str, overrides: list[str], spike_ms: float) -> None:
    def one_round(number: int) -> None:  # each round a longer manifest: only the new keys are uploaded
        manifest = write_manifest(tmp_path / f"subjects{number}", 40 * (number + 1))
        campaign.until_done("init_project", f"job.manifest={manifest}", *overrides,
                            check=lambda stored: check_upload(stored, manifest, complete=False))
        check_upload(read_store(campaign.storage_dir), manifest, complete=True)

    with latency_spikes(campaign.ledger, spike_ms) if spike_ms else contextlib.nullcontext():
        campaign.repeat(QUOTA["upload"], one_round)
    # each run signs in once; every further token was a renewal of one about to expire
    grants = sum(1 for call in http_calls if call == ("POST", "/oauth/token"))
    campaign.runs["token renewals"] += grants - campaign.runs["runs"]
    if variant == "tokens expiring":
        assert campaign.runs["token renewals"] > 100
    assert "grant was refused" not in caplog.text and "token is invalid or has expired" not in caplog.text
    campaign.record(tally, f"upload (init_project, {variant})")


# -- metadata updates ----------------------------------------------------------------------------------
def test_metadata_updates_are_whole_or_not_at_all(campaign: Campaign, tally: Tally, seed_campaign: SeedCampaign,
                                                  tmp_path: Path) -> None:
    zoo = seed_campaign([{"candidate_id": f"c{i}", "snr": i, "note": "seeded"} for i in range(60)])
    stored = read_store(campaign.storage_dir)
    current = {sid: stored.metadata[sid] for sid in zoo.subject_ids}

    def one_round(number: int) -> None:  # each round changes two fields of 50 of the 60 subjects
        changed = zoo.subject_ids[number % 10:][:50]
        after = dict(current) | {sid: {**current[sid], "snr": 100 * number + i, "note": f"round {number}"}
                                 for i, sid in enumerate(changed)}
        csv = tmp_path / f"updates{number}.csv"
        pd.DataFrame({"subject_id": changed, "snr": [after[sid]["snr"] for sid in changed],
                      "note": f"round {number}"}).to_csv(csv, index=False)

        def whole(stored: Stored) -> None:
            for sid in zoo.subject_ids:
                assert stored.metadata[sid] in (current[sid], after[sid]), f"subject {sid} half-updated"

        campaign.until_done("update_metadata", f"job.csv={csv}", f"job.subject_set_id={zoo.subject_set_id}",
                            "job.dry_run=false", "job.retries=5", "job.backoff=0.01", check=whole)
        stored = read_store(campaign.storage_dir)
        assert {sid: stored.metadata[sid] for sid in zoo.subject_ids} == after
        assert sorted(stored.members[zoo.subject_set_id]) == sorted(zoo.subject_ids)
        current.update(after)

    campaign.repeat(QUOTA["metadata"], one_round)
    campaign.record(tally, "metadata update (update_metadata)")


# -- dedupe --------------------------------------------------------------------------------------------
def test_dedupe_keeps_one_of_each_and_loses_none(campaign: Campaign, tally: Tally, seed_campaign: SeedCampaign,
                                                 local_backend: LocalBackend) -> None:
    kept: list[str] = []  # the oldest subject of each value, over the rounds
    shared: list[str] = []  # duplicates that are also in another set: unlinked, never deleted

    def one_round(number: int) -> None:  # each round adds 25 values with 1, 2 or 3 subjects each
        values = [f"r{number}-{v}" for v in range(25) for _ in range(1 + v % 3)]
        zoo = seed_campaign([{"candidate_id": value} for value in values])
        oldest = {value: sid for value, sid in reversed(list(zip(values, zoo.subject_ids)))}
        kept.extend(oldest.values())
        shared.extend([sid for value, sid in zip(values, zoo.subject_ids) if sid != oldest[value]][:3])
        with local_backend.connect():
            other, _ = ensure_subject_set(find_project(ProjectSpec(PROJECT, ""), "glitchrun"), "other")
            other.add(shared[-3:])

        def nothing_lost(stored: Stored) -> None:
            members = stored.members[zoo.subject_set_id]
            assert set(kept) <= set(members), "a kept subject left the set"
            assert len(members) == len(set(members))
            assert set(shared) <= set(stored.metadata), "a subject of another set was deleted"

        campaign.until_done("dedupe", f"job.subject_set_id={zoo.subject_set_id}", "job.dry_run=false",
                            "job.delete=true", "job.batch_size=5", check=nothing_lost)
        stored = read_store(campaign.storage_dir)
        assert sorted(stored.members[zoo.subject_set_id]) == sorted(kept)
        assert set(stored.metadata) == set(kept) | set(shared)
        assert sorted(stored.members[str(other.id)]) == sorted(shared)

    campaign.repeat(QUOTA["dedupe"], one_round)
    campaign.record(tally, "dedupe (delete=true)")


# -- export downloads ----------------------------------------------------------------------------------
def test_export_downloads_are_complete_and_valid(campaign: Campaign, tally: Tally, seed_campaign: SeedCampaign,
                                                 local_backend: LocalBackend) -> None:
    zoo = seed_campaign([{"candidate_id": f"c{i}", "#truth": "Blip"} for i in range(8)])
    with local_backend.connect() as connection:
        volunteer = connection.as_user("volunteer")
        workflow = Workflow.find(zoo.workflow_id)
        for i, sid in enumerate(zoo.subject_ids):
            classify(volunteer, workflow, sid, i % 2)
    with database(local_backend.storage_dir) as db:
        classifications = db.execute("SELECT COUNT(*) FROM classifications").fetchone()[0]

    def one_round(number: int) -> None:
        files = campaign.until_done("export_download", "job.generate=true", faults=FAULTS | {"latency_ms": 5})
        assert len(read_export(files["classifications"], "classifications")) == classifications
        assert sorted(read_export(files["subjects"], "subjects")["subject_id"].astype(str)) == sorted(zoo.subject_ids)
        assert read_export(files["workflows"], "workflows")["workflow_id"].astype(str).tolist()[-1] == zoo.workflow_id
        assert not list(files["classifications"].parent.glob("*.part"))

    campaign.repeat(QUOTA["export"], one_round)
    campaign.record(tally, "export download (generate=true)")


def test_an_orphan_that_cannot_be_deleted_is_not_uploaded_twice(run_job: RunJob, local_backend: LocalBackend,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """An interrupted run left an incomplete subject of key g0000 outside the set; deleting it keeps failing
    (every DELETE of it loses its connection). The key must then wait, not get a second subject beside it."""
    manifest = write_manifest(tmp_path / "subjects", 3)
    run_job("init_project", *FAST)
    with local_backend.connect() as connection:
        project = find_project(ProjectSpec(PROJECT, ""), "glitchrun")
        body, _ = connection.client.post("/subjects", json={"subjects": {
            "locations": ["image/png", "image/png"], "links": {"project": str(project.id)},
            "metadata": {"candidate_id": "g0000", "image_0": "g0000_0.png", KEY_FIELD: "g0000"}}})
    orphan = body["subjects"][0]["id"]
    send = requests.Session.request

    def unreachable_orphan(self: requests.Session, method: str, url: str, *args: Any,
                           **kwargs: Any) -> requests.Response:
        if method.upper() == "DELETE" and url.endswith(f"/subjects/{orphan}"):
            raise requests.ConnectionError(f"injected: DELETE of subject {orphan} lost its connection")
        return send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", unreachable_orphan)
    with contextlib.suppress(Exception):  # the job may well fail: the orphan is still there
        run_job("init_project", *FAST, f"job.manifest={manifest}", run_dir="upload")
    stored = read_store(local_backend.storage_dir)
    holders = [sid for sid, meta in stored.metadata.items() if meta.get(KEY_FIELD) == "g0000"]
    assert holders == [orphan], f"key g0000 now has subjects {holders}: the undeletable orphan and a new one"
