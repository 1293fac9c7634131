"""The subject upload engine: a manifest into a subject set, concurrent, retried, resumable, verified.

Why not ``Subject.save()``: after a 5xx on a create it sends the create again although the first may
have been committed (a duplicate subject), its media uploads run in threads whose failures nobody
checks (a subject without images), and each error stalls it for about 40 s. So the engine talks to the
API itself through the logged-in ``panoptes-client``:

1. it lists the set on the server and skips every key already there (the key travels in each subject's
   metadata as ``#glitchrun_key``, beside the visible key column, which is what identifies subjects put
   there by other tools such as the CLI), so a re-run never uploads twice;
2. it lists the project's subjects that carry the ``#glitchrun_key`` of a manifest key but are in no set
   (orphans of an interrupted run, or creates committed although the answer was a 5xx): for a key not yet
   in the set a complete one (same metadata, same bytes) is adopted, every other one is deleted; subjects
   in another set are never touched. A key whose orphans could not all be dealt with is not created in
   that pass (a new subject beside an undeletable orphan would leave two), only retried;
3. it creates each remaining subject once (a create is never blindly repeated: after a failure the next
   pass looks for it as an orphan first), PUTs its files to their upload URLs in parallel, reads them back
   and compares the bytes, re-sending what the store lost, then links subjects in batches;
4. it verifies the result on the server: the set holds each manifest key exactly once, nothing else,
   no subject outside any set still carries a manifest key, and every media location is fetchable (by
   HEAD, for subjects this run did not read back).
   ``upload_report.csv`` and the log say what happened to each key.

Transient failures (5xx, dropped connections, timeouts) are retried with exponential backoff; a
subject that still fails is reported, not fatal to the others. The account's upload limit is final: its
403 stops the upload at once (``SubjectLimitReached``), with no retry and no further pass.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pandera.pandas as pa
import requests
from panoptes_client import Panoptes
from panoptes_client.panoptes import PanoptesAPIException
from requests.adapters import HTTPAdapter
from tqdm import tqdm

from glitchrun.csvio import write_csv
from glitchrun.zooniverse.manifest import Location, Manifest, media_type
from glitchrun.zooniverse.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: hidden metadata field holding the manifest key of a subject
KEY_FIELD = "#glitchrun_key"


def own_fields(metadata: dict[str, Any]) -> list[str]:
    """The fields of a subject's metadata the engine finds it by: ``#glitchrun_key`` and the key column that
    holds the same value (e.g. ``candidate_id``). Changing them makes a re-run upload a duplicate, or
    another candidate's subject; none for a subject glitchrun did not upload."""
    key = metadata.get(KEY_FIELD)
    if key is None:
        return []
    return [KEY_FIELD, *(field for field, value in metadata.items() if field != KEY_FIELD and value == key)]


#: seconds to connect to / wait for an answer from the media store
MEDIA_TIMEOUT = (10, 120)
STATUSES = ("uploaded", "adopted", "skipped", "failed", "unexpected")

REPORT_SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column(str),
        "status": pa.Column(str, pa.Check.isin(STATUSES)),
        "subject_id": pa.Column(str, nullable=True),
        "problem": pa.Column(str, nullable=True),
    },
    strict=True,
    coerce=True,
)


class MediaIncomplete(RuntimeError):
    """A subject's media could not be stored completely."""


class SubjectLimitReached(RuntimeError):
    """Zooniverse refused a subject because the account reached its upload limit: final, never retried."""


def limit_refusal(err: BaseException) -> bool:
    """The real server's 403 for an account at its limit (``subjects_controller.rb`` ``check_subject_limit``)."""
    return isinstance(err, PanoptesAPIException) and str(err).startswith("User has uploaded")


@dataclass
class UploadOutcome:
    """What an upload did, key by key; ``ok`` means the set on the server is exactly the manifest."""

    uploaded: list[str]  # created by this run
    adopted: list[str]  # complete but unlinked subjects of an earlier run, linked now
    skipped: list[str]  # already in the set
    failed: list[str]  # not in the set, or in it more than once, or with media missing
    subject_ids: dict[str, str]  # key -> subject id, for every key now in the set
    ok: bool
    report: Path


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class SubjectUploader:
    """Uploads a ``Manifest`` into a subject set (config node ``uploader``); does no work until ``upload``."""

    def __init__(self, workers: int = 8, retries: int = 4, backoff: float = 0.5, link_batch: int = 100) -> None:
        if workers < 1 or retries < 0 or backoff < 0 or not 1 <= link_batch <= 100:
            raise ValueError(f"uploader: need workers >= 1, retries >= 0, backoff >= 0 and 1 <= link_batch <= 100; "
                             f"got {workers=}, {retries=}, {backoff=}, {link_batch=}")
        # imported here, not above: glitchrun.zooniverse.backend imports ``transient`` from this module

        self.workers = workers
        self.retries = retries
        self.backoff = backoff
        self.link_batch = link_batch
        #: ``retry(call)``: ``call()``, tried again after transient failures with exponential backoff
        self.retry: Retry = Retry(retries=retries, backoff=backoff)

    def upload(self, manifest: Manifest, project_id: str, subject_set_id: str, report_dir: Path) -> UploadOutcome:
        """Make subject set ``subject_set_id`` of project ``project_id`` hold the manifest, and check it.

        Runs with the calling thread's logged-in client (``backend.connect()``). Writes
        ``report_dir/upload_report.csv``.
        """
        return Upload(self, manifest, str(project_id), str(subject_set_id)).run(Path(report_dir))


class Upload:
    """One ``SubjectUploader.upload`` call: its client, manifest, target set and what happened to each key."""

    def __init__(self, config: SubjectUploader, manifest: Manifest, project_id: str, subject_set_id: str) -> None:
        self.config = config
        self.manifest = manifest
        self.project_id = project_id
        self.subject_set_id = subject_set_id
        self.client = Panoptes.client()
        # each of the ``workers`` subjects in flight sends and checks its files in parallel, so a subject
        # costs four round trips (create, PUT files, read back, GET files) whatever its number of files
        in_flight = config.workers * len(manifest.media_columns)
        self.media_pool = ThreadPoolExecutor(in_flight, thread_name_prefix="media")
        self.media = requests.Session()  # media PUT/GET: plain HTTP, no Panoptes credentials
        self.media.mount("http://", HTTPAdapter(pool_maxsize=in_flight))
        self.media.mount("https://", HTTPAdapter(pool_maxsize=in_flight))
        # the client's own pool keeps 10 connections: more workers would open and drop one per request
        self.client.session.mount(self.client.endpoint, HTTPAdapter(pool_maxsize=config.workers + 1))
        self.status: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.verified: set[str] = set()  # ids of subjects whose media this run read back and compared

    def run(self, report_dir: Path) -> UploadOutcome:
        keys = self.manifest.keys
        try:
            members = self.members()
            todo = [key for key in keys if key not in members]
            self.status.update({key: "skipped" for key in keys if key in members})
            log.info("subject set %s already holds %d of the %d manifest keys", self.subject_set_id,
                     len(keys) - len(todo), len(keys))
            orphans = self.orphans()
            for attempt in range(self.config.retries + 1):
                if not todo and not orphans:
                    break
                if attempt:
                    log.info("pass %d: %d subjects left to upload, unlinked subjects of %d keys left to settle",
                             attempt + 1, len(todo), len(orphans))
                    time.sleep(self.config.backoff * 2 ** (attempt - 1))
                blocked = self.adopt_orphans(orphans)
                self.create_all([key for key in todo if key not in self.status and key not in blocked])
                todo = [key for key in todo if key not in self.status]
                orphans = self.orphans()
            subject_ids, problems, unexpected = self.verify(orphans)
        finally:
            self.media_pool.shutdown(cancel_futures=True)
            self.media.close()
        return self.outcome(subject_ids, problems, unexpected, report_dir)

    # -- reading the server ---------------------------------------------------------------------------
    def list_subjects(self, **filters: str) -> list[dict[str, Any]]:
        """Every subject matching ``filters``, 100 per request, each page retried on its own.

        Raw pages rather than ``Subject.where``: the model's GET retries stall ~40 s per 5xx.
        """
        subjects: list[dict[str, Any]] = []
        path: str | None = "/subjects"
        params: dict[str, Any] = {**filters, "page_size": 100}
        while path:
            page, _ = self.config.retry(lambda: self.client.get(path, params=params))
            subjects += page["subjects"]
            path, params = page["meta"]["subjects"].get("next_href"), {}
        return subjects

    def key_of(self, subject: dict[str, Any]) -> str | None:
        metadata = subject.get("metadata") or {}
        key = metadata.get(KEY_FIELD, metadata.get(self.manifest.key_column))
        return None if key is None else str(key)

    def members(self) -> dict[str | None, list[dict[str, Any]]]:
        """The set's subjects by key, as the server has them now."""
        by_key: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for subject in self.list_subjects(subject_set_id=self.subject_set_id):
            by_key[self.key_of(subject)].append(subject)
        return by_key

    def fetch(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A media request, retried on transient failures; 4xx answers are returned, not raised."""

        def once() -> requests.Response:
            response = self.media.request(method, url, timeout=MEDIA_TIMEOUT, **kwargs)
            if response.status_code >= 500:
                response.raise_for_status()
            return response

        return self.config.retry(once)

    def media_problems(self, subject: dict[str, Any], locations: list[Location],
                       contents: dict[int, bytes] | None = None) -> dict[int, str]:
        """What is wrong with a subject's media, by position; {} if complete.

        With ``contents`` (position -> bytes of the local file) each stored file is read back and compared;
        without, each must only be fetchable (HEAD). External URLs must be stored as given.
        """
        stored = subject.get("locations") or []
        if len(stored) != len(locations):
            wrong = f"subject {subject['id']} has {len(stored)} media, the manifest {len(locations)}"
            return {i: wrong for i in range(len(locations))}

        def problem(i: int) -> str | None:
            (mime, url), = stored[i].items()
            want = locations[i]
            if isinstance(want, dict):
                return None if stored[i] == want else f"media {i} is {stored[i]}, expected {want}"
            if mime != media_type(want.name):
                return f"media {i} has type {mime}, expected {media_type(want.name)}"
            if contents is None:
                status = self.fetch("HEAD", url).status_code
                return None if status == 200 else f"media {i} ({url}) answers {status}"
            response = self.fetch("GET", url)
            same = response.status_code == 200 and response.content == contents[i]
            return None if same else f"media {i} ({url}) does not hold {want.name} (HTTP {response.status_code})"

        found = self.media_pool.map(problem, range(len(locations)))
        return {i: text for i, text in enumerate(found) if text}

    # -- writing ---------------------------------------------------------------------------------------
    def concurrently(self, task: Callable[[str], T], keys: list[str], desc: str,
                     done: Callable[[str, T], None]) -> dict[str, str]:
        """Run ``task(key)`` on ``workers`` threads with this client; ``done`` runs here as each finishes.

        Returns the error of each key whose task raised. Pending tasks are cancelled if ``done`` raises.
        """
        errors: dict[str, str] = {}
        if not keys:
            return errors

        def in_client(key: str) -> T:
            with self.client:  # panoptes-client keeps the logged-in client per thread
                return task(key)

        pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="upload")
        try:
            futures = {pool.submit(in_client, key): key for key in keys}
            with tqdm(total=len(keys), desc=desc, unit="subject", file=sys.stderr, disable=None) as bar:
                for future in as_completed(futures):
                    key = futures[future]
                    bar.update()
                    if isinstance(future.exception(), SubjectLimitReached):
                        raise future.exception()  # final: no other subject of this upload can be made
                    if future.exception() is not None:
                        errors[key] = describe(future.exception())
                        log.warning("%s: %s", key, errors[key])
                    else:
                        done(key, future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return errors

    def link(self, pairs: list[tuple[str, str]], status: str) -> None:
        """Link (key, subject id) pairs to the set in one request; the keys get ``status`` once linked."""
        ids = [subject_id for _, subject_id in pairs]
        path = f"/subject_sets/{self.subject_set_id}/links/subjects"
        try:
            self.config.retry(lambda: self.client.post(path, json={"subjects": ids}))
        except Exception as err:  # the subjects stay orphans; the next pass adopts them
            for key, _ in pairs:
                self.errors[key] = f"linking failed: {describe(err)}"
            log.warning("linking %d subjects to set %s failed: %s", len(ids), self.subject_set_id, describe(err))
            return
        self.status.update({key: status for key, _ in pairs})

    def batched_linker(self, status: str) -> tuple[Callable[[str, str | None], None], Callable[[], None]]:
        """(add, flush): ``add(key, subject_id)`` links once ``link_batch`` ids wait; ``flush()`` links the rest."""
        waiting: list[tuple[str, str]] = []

        def flush() -> None:
            if waiting:
                self.link(list(waiting), status)
                waiting.clear()

        def add(key: str, subject_id: str | None) -> None:
            if subject_id is not None:
                waiting.append((key, subject_id))
            if len(waiting) >= self.config.link_batch:
                flush()

        return add, flush

    def delete(self, subject_id: str) -> None:
        """Delete a subject that is in no set; its own GET gives the ETag the real server insists on.

        A subject already gone counts as deleted: a DELETE answered 5xx after it went through is retried
        into a 404 ("Could not find subject ..."), which must not block its key for the pass.
        """
        try:
            _, etag = self.config.retry(lambda: self.client.get(f"/subjects/{subject_id}"))
            self.config.retry(lambda: self.client.delete(f"/subjects/{subject_id}", etag=etag))
        except PanoptesAPIException as err:
            if not str(err).startswith("Could not find subject"):
                raise

    def expected_metadata(self, key: str) -> dict[str, Any]:
        return {**self.manifest.metadata(key), KEY_FIELD: key}

    def local_contents(self, key: str) -> dict[int, bytes]:
        return {i: loc.read_bytes() for i, loc in enumerate(self.manifest.locations(key)) if isinstance(loc, Path)}

    def orphans(self) -> dict[str, list[dict[str, Any]]]:
        """The project's subjects in no set that carry the hidden key of a manifest key, by key."""
        wanted = set(self.manifest.keys)
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for subject in self.list_subjects(project_id=self.project_id):
            key = self.key_of(subject)
            # only subjects the server says are in no set: never touch one that belongs to another set
            if key in wanted and KEY_FIELD in subject["metadata"] and subject["links"].get("subject_sets") == []:
                found[key].append(subject)
        return dict(found)

    def adopt_orphans(self, orphans: dict[str, list[dict[str, Any]]]) -> set[str]:
        """Link a complete orphan of each key not yet in the set (earlier runs' work); delete the other orphans.

        Returns the keys not in the set that still have a subject outside it (one that could not be deleted,
        checked or linked): creating another subject of such a key would leave two, so it must wait.
        """
        if not orphans:
            return set()
        log.info("found unlinked subjects of %d keys from an earlier run; checking them", len(orphans))
        cleared: set[str] = set()  # keys whose orphans are all deleted now

        def settle(key: str) -> str | None:
            """The id of a complete orphan of this key (if any, and if the key is not in the set); the others are
            deleted, each tried once in this pass (one that cannot be deleted is recorded as the key's error)."""
            adopted, undeleted = None, []
            for subject in sorted(orphans[key], key=lambda s: int(s["id"])):
                if adopted is None and key not in self.status and subject["metadata"] == self.expected_metadata(key) \
                        and not self.media_problems(subject, self.manifest.locations(key), self.local_contents(key)):
                    adopted = subject["id"]
                    self.verified.add(adopted)
                    continue
                try:
                    self.delete(subject["id"])
                except Exception as err:  # still there: the next pass (or run) tries again
                    undeleted.append(f"{subject['id']} ({describe(err)})")
                    continue
                log.info("%s: deleted unlinked subject %s (incomplete, changed or a duplicate)", key, subject["id"])
            if undeleted:
                self.errors[key] = f"unlinked subjects left by an earlier run could not be deleted: {', '.join(undeleted)}"
                log.warning("%s: %s", key, self.errors[key])
            elif adopted is None:
                cleared.add(key)
            return adopted

        add, flush = self.batched_linker("adopted")
        self.errors.update(self.concurrently(settle, sorted(orphans), "adopt", add))
        flush()
        return {key for key in orphans if key not in self.status and key not in cleared}

    def create(self, key: str) -> str:
        """Create one subject, store and check its media; returns its id, or raises (nothing left behind)."""
        locations = self.manifest.locations(key)
        body = {"subjects": {
            "locations": [loc if isinstance(loc, dict) else media_type(loc.name) for loc in locations],
            "metadata": self.expected_metadata(key),
            "links": {"project": self.project_id},
        }}
        # a single try: a failed create may still have been committed, so the next pass looks for it first
        try:
            created, _ = self.client.post("/subjects", json=body)
        except PanoptesAPIException as err:
            if limit_refusal(err):
                raise SubjectLimitReached(f"Zooniverse refused new subjects: {err}. The subjects made so far stay; "
                                          "ask the Zooniverse team to raise the account's limit") from None
            raise
        subject = created["subjects"][0]
        try:
            self.store_media(subject, locations, self.local_contents(key))
        except Exception:
            try:
                self.delete(subject["id"])
            except Exception as err:  # left as an incomplete orphan: the next pass or run deletes it
                log.warning("%s: could not delete incomplete subject %s: %s", key, subject["id"], describe(err))
            raise
        self.verified.add(subject["id"])
        return subject["id"]

    def store_media(self, subject: dict[str, Any], locations: list[Location], contents: dict[int, bytes]) -> None:
        """PUT each local file to its upload URL, read the subject back and re-send what was not stored."""
        upload_urls = [next(iter(location.values())) for location in subject["locations"]]

        def put(i: int) -> requests.Response:
            return self.fetch("PUT", upload_urls[i], data=contents[i], headers={
                "Content-Type": media_type(locations[i].name), "x-ms-blob-type": "BlockBlob"})

        missing = list(contents)
        problems: dict[int, str] = {}
        for _ in range(self.config.retries + 1):
            for i, response in zip(missing, self.media_pool.map(put, missing)):
                if not response.ok:
                    raise MediaIncomplete(f"upload of {locations[i].name} answered HTTP {response.status_code}")
            stored, _ = self.config.retry(lambda: self.client.get(f"/subjects/{subject['id']}"))
            problems = self.media_problems(stored["subjects"][0], locations, contents)
            missing = [i for i in problems if i in contents]
            if not problems or len(missing) < len(problems):  # complete, or wrong in a way a re-send cannot fix
                break
        if problems:
            raise MediaIncomplete("; ".join(problems.values()))

    def create_all(self, keys: list[str]) -> None:
        add, flush = self.batched_linker("uploaded")
        self.errors.update(self.concurrently(self.create, keys, "upload", add))
        flush()

    # -- checking and reporting -----------------------------------------------------------------------
    def verify(self, orphans: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, str], dict[str, str],
                                                                      list[dict[str, Any]]]:
        """(subject id by key, problem by key, subjects of the set that are not in the manifest), from the server.

        ``orphans`` are the project's subjects outside any set still carrying a manifest key, as just listed.
        """
        members = self.members()
        keys = set(self.manifest.keys)
        unexpected = [s for key, subjects in members.items() if key not in keys for s in subjects]
        problems: dict[str, str] = {}
        for key in keys:
            if key not in members:
                problems[key] = self.errors.get(key, "not in the set")
            elif len(members[key]) > 1:
                problems[key] = f"in the set {len(members[key])} times: subjects {[s['id'] for s in members[key]]}"
            if orphans.get(key):
                leftover = f"subjects outside the set still carry its key: {[s['id'] for s in orphans[key]]}"
                problems[key] = f"{problems[key]}; {leftover}" if key in problems else leftover

        def check(key: str) -> str | None:
            found = self.media_problems(members[key][0], self.manifest.locations(key))
            return "; ".join(found.values()) or None

        def record(key: str, problem: str | None) -> None:
            if problem:
                problems[key] = problem

        # media read back and compared earlier in this run are not fetched again
        checked = [key for key in self.manifest.keys
                   if len(members.get(key, [])) == 1 and members[key][0]["id"] not in self.verified]
        errors = self.concurrently(check, checked, "verify", record)
        problems.update({key: f"media could not be checked: {error}" for key, error in errors.items()})
        subject_ids = {key: str(members[key][0]["id"]) for key in self.manifest.keys if key in members}
        return subject_ids, problems, unexpected

    def outcome(self, subject_ids: dict[str, str], problems: dict[str, str], unexpected: list[dict[str, Any]],
                report_dir: Path) -> UploadOutcome:
        """Each key's final status (a key with a problem has failed, whatever this run did), the report and the log."""
        # a key in the set without a status got there by a link whose answer was lost: this run's upload
        status = {key: "failed" if key in problems else self.status.get(key, "uploaded") for key in self.manifest.keys}
        rows = [{"key": key, "status": status[key], "subject_id": subject_ids.get(key), "problem": problems.get(key)}
                for key in self.manifest.keys]
        rows += [{"key": self.key_of(s) or "", "status": "unexpected", "subject_id": str(s["id"]),
                  "problem": "in the set but not in the manifest"} for s in unexpected]
        report = write_csv(pd.DataFrame(rows, columns=list(REPORT_SCHEMA.columns)), Path(report_dir) / "upload_report.csv",
                           REPORT_SCHEMA, what="upload report")
        by_status = {name: [key for key in self.manifest.keys if status[key] == name] for name in STATUSES}
        outcome = UploadOutcome(by_status["uploaded"], by_status["adopted"], by_status["skipped"], by_status["failed"],
                                subject_ids, ok=not problems and not unexpected, report=report)
        log.info("subject set %s: %d uploaded, %d adopted from an earlier run, %d already there, %d failed, "
                 "%d not in the manifest; verification %s; report %s", self.subject_set_id, len(outcome.uploaded),
                 len(outcome.adopted), len(outcome.skipped), len(outcome.failed), len(unexpected),
                 "passed" if outcome.ok else "FAILED", report)
        for key in outcome.failed[:20]:
            log.warning("%s: %s", key, problems[key])
        return outcome
