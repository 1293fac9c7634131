"""update_metadata's engine vs a naive loop, on the embedded Panoptes: HTTP requests made and wall time.

    python benchmarks/bench_update_metadata.py [--subjects 2000] [--changed 0.5] [--latency-ms 0]

Two subject sets get the same N subjects; one CSV changes a fraction of them. The engine
(``job=update_metadata``, dry_run=false) updates set A; the naive loop updates set B one row at a time
(``Subject.find(id)``, change the metadata, ``save()``), as a script over the CSV would. Requests are
counted by wrapping ``requests.Session.request`` (the server runs in-process and does not use requests).
``--latency-ms`` adds that delay to every request on the server, to look like a remote Zooniverse.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from panoptes_client import Subject

from glitchrun.jobs.update_metadata import UpdateMetadata
from glitchrun.zooniverse.backend import Connection, LocalBackend
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    ensure_project,
    ensure_subject_set,
)

IMAGE = "https://example.org/glitch.png"


def counting() -> Counter:
    """Count every request by method from now on."""
    counts: Counter = Counter()
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        counts[method.upper()] += 1
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request
    return counts


class Running:
    """An open connection posing as a backend, so that the job and the loop talk to one running server."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self.connection


def seed(connection: Connection, n: int) -> dict[str, dict[str, str]]:
    """Two sets of n subjects with the same metadata; returns set id -> candidate id -> subject id."""
    project, _ = ensure_project(ProjectSpec(display_name="bench", description="bench"), connection.login)
    sets = [str(ensure_subject_set(project, name)[0].id) for name in ("engine", "naive")]

    def create(args: tuple[str, int]) -> None:
        set_id, i = args
        with connection.client:
            connection.client.post("/subjects", json={"subjects": {
                "locations": [{"image/png": IMAGE}], "links": {"project": str(project.id), "subject_sets": [set_id]},
                "metadata": {"candidate_id": f"c{i}", "snr": 8 + i % 10, "ifo": "H1"}}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, [(s, i) for s in sets for i in range(n)]))
    return {s: {x.metadata["candidate_id"]: str(x.id) for x in Subject.where(subject_set_id=s, page_size=100)} for s in sets}


def updates(subject_of: dict[str, str], changed: float) -> pd.DataFrame:
    """One row per subject: ``ifo`` changes for the first ``changed`` fraction, the rest restate the values."""
    n = len(subject_of)
    return pd.DataFrame({"subject_id": [subject_of[f"c{i}"] for i in range(n)], "snr": [8 + i % 10 for i in range(n)],
                         "ifo": ["L1" if i < changed * n else "H1" for i in range(n)]})


def naive(rows: pd.DataFrame) -> None:
    """What a script over the CSV would do: get each row's subject, change it, save it."""
    for row in rows.to_dict("records"):
        subject = Subject.find(row["subject_id"])
        subject.metadata.update(snr=row["snr"], ifo=row["ifo"])
        subject.save()


def measure(counts: Counter, work: Callable[[], Any]) -> tuple[Counter, float]:
    counts.clear()
    start = time.perf_counter()
    work()
    return Counter(counts), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--changed", type=float, default=0.5, help="fraction of subjects whose metadata changes")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp, LocalBackend(Path(tmp) / "panoptes").connect() as connection:
        sets = seed(connection, args.subjects)
        engine_set, naive_set = sets
        csv = Path(tmp) / "updates.csv"
        updates(sets[engine_set], args.changed).to_csv(csv, index=False)
        job = UpdateMetadata(Running(connection), Path(tmp) / "run", csv, subject_set_id=engine_set, dry_run=False,
                             workers=args.workers)
        connection.server.faults.update(latency_ms=args.latency_ms)
        naive_rows = updates(sets[naive_set], args.changed)
        counts = counting()
        results = {"update_metadata engine": measure(counts, job.run),
                   "naive find/modify/save loop": measure(counts, lambda: naive(naive_rows))}
        final = [sorted((s.metadata["candidate_id"], s.metadata["ifo"]) for s in Subject.where(subject_set_id=i, page_size=100))
                 for i in (engine_set, naive_set)]
        assert final[0] == final[1], "the two approaches left different metadata"

    print(f"{args.subjects} subjects, {round(args.changed * args.subjects)} changing, latency {args.latency_ms} ms, "
          f"{args.workers} workers")
    print("| approach | GET | PUT | other | requests | wall time (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (calls, seconds) in results.items():
        other = sum(calls.values()) - calls["GET"] - calls["PUT"]
        print(f"| {name} | {calls['GET']} | {calls['PUT']} | {other} | {sum(calls.values())} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
