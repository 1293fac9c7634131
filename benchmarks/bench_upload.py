"""Subjects per second: glitchrun's upload engine against the official ``panoptes`` CLI, same manifest, same server.

    python benchmarks/bench_upload.py                        # 500 subjects x 4 PNGs, 8 workers
    python benchmarks/bench_upload.py --subjects 1000 --workers 16 --latency-ms 20

One embedded Panoptes (``glitchrun.embedded_panoptes``) is started in a temporary folder with an owner
account; one project gets two subject sets. ``panoptes subject-set upload-subjects`` (panoptescli, run as a
subprocess with HOME in the temporary folder; its config file there holds the endpoint and the owner's
credentials, because the CLI passes an empty user name to the client and so ignores PANOPTES_USERNAME)
fills one, ``SubjectUploader.upload`` the other, from the same manifest of random-noise PNGs (noise does
not compress, so each file is about as big as a real Q-scan: --pixels 100 gives ~30 kB). Both sets are
then counted on the server. --latency-ms adds a delay to every request (the server's fault injection),
a rough stand-in for the round trip to zooniverse.org, which favours concurrency.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from panoptes_client import Panoptes
from PIL import Image

from glitchrun.csvio import write_csv
from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.zooniverse.manifest import read_manifest
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    ensure_project,
    ensure_subject_set,
    subject_set_members,
)
from glitchrun.zooniverse.uploader import SubjectUploader

OWNER = "bench"


def write_manifest(folder: Path, subjects: int, images: int, pixels: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(subjects):
        row = {"candidate_id": f"g{i:05d}"}
        for j in range(images):
            row[f"image_{j}"] = name = f"g{i:05d}_{j}.png"
            Image.fromarray(rng.integers(0, 256, (pixels, pixels, 3), dtype=np.uint8)).save(folder / name)
        rows.append(row | {"ifo": "H1", "#truth": "Blip"})
    return write_csv(pd.DataFrame(rows), folder / "manifest.csv")


def serve(storage: Path, latency_ms: int, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: run the embedded Panoptes, send its endpoint and the owner's password, wait for "stop"."""
    # enough server threads that injected latency (a sleep in a server thread) does not cap concurrency
    with EmbeddedPanoptes(storage, faults={"latency_ms": latency_ms}, threads=64) as server:
        _, password = server.ensure_user(OWNER)
        pipe.send((server.endpoint, password))
        pipe.recv()


def panoptes_cli() -> str:
    beside = Path(sys.executable).with_name("panoptes")
    found = str(beside) if beside.exists() else shutil.which("panoptes")
    if not found:
        sys.exit("the panoptes CLI is not installed (pip install panoptescli==1.2.1)")
    return found


def run_cli(endpoint: str, password: str, subject_set_id: str, manifest: Path, home: Path) -> float:
    """Seconds the official CLI takes to upload the manifest into the set."""
    (home / ".panoptes").mkdir(parents=True)
    config = home / ".panoptes" / "config.yml"
    config.write_text(f"endpoint: {endpoint}\nusername: {OWNER}\npassword: {password}\n")
    config.chmod(0o600)
    env = os.environ | {"HOME": str(home), "PANOPTES_ENDPOINT": endpoint, "PANOPTES_USERNAME": OWNER,
                        "PANOPTES_PASSWORD": password}
    start = time.perf_counter()
    subprocess.run([panoptes_cli(), "subject-set", "upload-subjects", subject_set_id, str(manifest)], env=env,
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--pixels", type=int, default=100, help="side of each square noise PNG")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_upload_") as tmp:
        tmp = Path(tmp)
        path = write_manifest(tmp / "subjects", args.subjects, args.images, args.pixels)
        manifest = read_manifest(path, "candidate_id")
        size = sum(f.stat().st_size for f in (tmp / "subjects").glob("*.png")) / args.subjects / args.images
        # the server gets its own process, as zooniverse.org is outside both clients' processes
        ours, theirs = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(target=serve, args=(tmp / "panoptes", args.latency_ms, theirs))
        server.start()
        try:
            endpoint, password = ours.recv()
            Panoptes.connect(endpoint=endpoint, username=OWNER, password=password)
            project, _ = ensure_project(ProjectSpec("upload benchmark", "subjects per second"), OWNER)
            cli_set, _ = ensure_subject_set(project, "panoptes CLI")
            engine_set, _ = ensure_subject_set(project, "glitchrun engine")

            cli_seconds = run_cli(endpoint, password, str(cli_set.id), path, tmp / "home")
            start = time.perf_counter()
            uploader = SubjectUploader(workers=args.workers)
            outcome = uploader.upload(manifest, str(project.id), str(engine_set.id), tmp / "report")
            engine_seconds = time.perf_counter() - start
            counts = {name: len(subject_set_members(s.id)) for name, s in (("cli", cli_set), ("engine", engine_set))}
        finally:
            ours.send("stop")
            server.join(timeout=30)

    if not outcome.ok or set(counts.values()) != {args.subjects}:
        sys.exit(f"an upload is incomplete: sets hold {counts}, engine verification ok={outcome.ok}")
    print(f"{args.subjects} subjects x {args.images} PNGs of {size / 1000:.0f} kB, embedded Panoptes, "
          f"latency {args.latency_ms} ms, engine workers {args.workers}")
    print(f"{'uploader':<36} {'seconds':>8} {'subjects/s':>11} {'speed-up':>9}")
    rows = (("panoptes subject-set upload-subjects", cli_seconds), ("glitchrun SubjectUploader", engine_seconds))
    for name, seconds in rows:
        print(f"{name:<36} {seconds:8.1f} {args.subjects / seconds:11.1f} {cli_seconds / seconds:8.1f}x")


if __name__ == "__main__":
    main()
