"""Subject creation with uploads through panoptes-client against the embedded Panoptes: subjects/s.

    python benchmarks/bench_server.py                      # 100 subjects x 4 PNGs per mode
    python benchmarks/bench_server.py --subjects 300 --pixels 200
    python benchmarks/bench_server.py --latency-ms 50      # every request delayed, like a far server

Each mode creates ``--subjects`` subjects with ``--images`` random-noise PNGs each (noise does not
compress, so ``--pixels 100`` gives ~30 kB files, about a real Q-scan) in one project, once with
sequential ``Subject.save()`` and once inside ``Subject.async_saves()`` (5 saves in flight, each with
parallel uploads), in the same run. That is done twice: with the server in this process (what
``backend=local`` does, client and server then share one GIL) and in a child process (what
``job=serve`` gives other programs). Every upload is checked on disk afterwards. ``--latency-ms`` delays
every request on the server (its fault injection), a rough stand-in for the round trip to zooniverse.org.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import multiprocessing.connection
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from panoptes_client import Panoptes, Project, Subject
from PIL import Image

from glitchrun.embedded_panoptes import EmbeddedPanoptes

OWNER = "bench"


def noise_pngs(count: int, pixels: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (pixels, pixels, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    return images


def create_subjects(project: Project, count: int, images: list[bytes], parallel: bool) -> float:
    """Seconds to create ``count`` subjects, each with every image of ``images`` uploaded."""
    started = time.perf_counter()
    with Subject.async_saves() if parallel else nullcontext():
        for i in range(count):
            subject = Subject()
            subject.links.project = project
            for data in images:
                subject.add_location(io.BytesIO(data))
            subject.metadata.update({"candidate": f"g{i:05d}"})
            subject.save()
    return time.perf_counter() - started


def serve_in_child(storage: Path, latency_ms: int, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: run a server, send its endpoint and the owner's password, wait for any message."""
    with EmbeddedPanoptes(storage, faults={"latency_ms": latency_ms}) as server:
        pipe.send((server.endpoint, server.ensure_user(OWNER)[1]))
        pipe.recv()


def measure(endpoint: str, password: str, args: argparse.Namespace, images: list[bytes]) -> dict[str, float]:
    with Panoptes(endpoint=endpoint, username=OWNER, password=password):
        project = Project()
        project.display_name, project.description = f"bench {time.time_ns()}", "benchmark"
        project.primary_language, project.private = "en", True
        project.save()
        return {mode: create_subjects(project, args.subjects, images, parallel=mode == "async_saves")
                for mode in ("sequential", "async_saves")}


def run_in_process(storage: Path, args: argparse.Namespace, images: list[bytes]) -> dict[str, float]:
    with EmbeddedPanoptes(storage, faults={"latency_ms": args.latency_ms}) as server:
        return measure(server.endpoint, server.ensure_user(OWNER)[1], args, images)


def run_in_child(storage: Path, args: argparse.Namespace, images: list[bytes]) -> dict[str, float]:
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=serve_in_child, args=(storage, args.latency_ms, theirs))
    child.start()
    try:
        endpoint, password = ours.recv()
        return measure(endpoint, password, args, images)
    finally:
        ours.send("stop")
        child.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100, help="subjects per mode (default 100)")
    parser.add_argument("--images", type=int, default=4, help="PNGs per subject (default 4)")
    parser.add_argument("--pixels", type=int, default=100, help="PNG width and height (default 100, ~30 kB)")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay added to every request (default 0)")
    args = parser.parse_args()
    images = noise_pngs(args.images, args.pixels)
    megabytes = args.subjects * sum(map(len, images)) / 1e6
    print(f"{args.subjects} subjects x {args.images} PNGs of {len(images[0]) / 1e3:.0f} kB per mode "
          f"({megabytes:.1f} MB), {args.latency_ms} ms added per request, {multiprocessing.cpu_count()} cores")
    print(f"{'server':<14} {'mode':<12} {'seconds':>8} {'subjects/s':>11} {'uploads/s':>10} {'MB/s':>6}")
    runs: dict[str, Callable[[Path, argparse.Namespace, list[bytes]], dict[str, float]]] = {
        "in-process": run_in_process, "child process": run_in_child}
    with tempfile.TemporaryDirectory() as folder:
        for where, run in runs.items():
            storage = Path(folder) / where.replace(" ", "-")
            for mode, seconds in run(storage, args, images).items():
                print(f"{where:<14} {mode:<12} {seconds:8.2f} {args.subjects / seconds:11.1f} "
                      f"{args.subjects * args.images / seconds:10.1f} {megabytes / seconds:6.1f}")
            stored = len(list((storage / "media" / "subject_location").iterdir()))
            assert stored == 2 * args.subjects * args.images, f"{stored} uploads stored, expected more"


if __name__ == "__main__":
    main()
