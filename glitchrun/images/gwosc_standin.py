"""A local stand-in for the GWOSC open-data service, for tests, benchmarks and offline demos.

It answers the v2 API calls ``gwosc`` 0.8 makes to locate strain (``/api/v2/event-versions``,
``/api/v2/runs``, ``/api/v2/runs/{run}/strain-files``) with GWOSC's JSON shapes, and serves GWOSC-format
HDF5 files (``strain/Strain`` with ``Xstart``/``Xspacing``, ``meta/Detector``) under GWOSC's archive layout
and T050017 names (``H-H1_GWOSC_O3a_4KHZ_R1-<gps>-<duration>.hdf5``), so gwosc's discovery and gwpy's
reader run unchanged against it (``host=standin.host``). Files honour HTTP ``Range`` (as GWOSC's server
does); ``bandwidth`` limits the bytes per second of each transfer, and ``cut_next`` breaks the next
file transfers half way, as a dropped connection would.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from glitchrun.images.strain import write_gwosc_hdf5

ARCHIVE = "/archive/data"


@dataclass(frozen=True)
class StrainFile:
    ifo: str
    run: str
    gps_start: int
    duration: int
    sample_rate: int
    path: Path

    @property
    def url_path(self) -> str:
        return f"{ARCHIVE}/{self.run}_{self.sample_rate // 1024}KHZ_R1/{self.gps_start >> 20 << 20}/{self.path.name}"


def _page(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"next": None, "previous": None, "results_count": len(results), "results_per_page": 100,
            "num_pages": 1, "page_number": 1, "results": results}


class GwoscStandIn:
    """Serves the files added with ``add`` on ``127.0.0.1`` (a free port) while used as a context manager.

    ``downloads`` counts the file transfers per file name and ``bytes_sent`` their bytes.
    """

    def __init__(self, root: Path, bandwidth: float | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.bandwidth = bandwidth
        self.files: list[StrainFile] = []
        self.downloads: Counter[str] = Counter()
        self.ranges: list[str] = []
        self.bytes_sent = 0
        self.cuts = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def add(self, ifo: str, gps_start: int, data: np.ndarray, sample_rate: int, run: str = "O3a",
            compression: str | None = None) -> StrainFile:
        duration = data.size // sample_rate
        name = f"{ifo[0]}-{ifo}_GWOSC_{run}_{sample_rate // 1024}KHZ_R1-{gps_start}-{duration}.hdf5"
        entry = StrainFile(ifo, run, int(gps_start), int(duration), int(sample_rate), self.root / name)
        write_gwosc_hdf5(entry.path, data, ifo, gps_start, sample_rate, compression)
        self.files.append(entry)
        return entry

    def cut_next(self, transfers: int = 1) -> None:
        """Break the next ``transfers`` file transfers after half of their bytes."""
        with self.lock:
            self.cuts += transfers

    @property
    def host(self) -> str:
        assert self.server is not None, "start the stand-in first (with ...)"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> GwoscStandIn:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    # -- the API ----------------------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        spans: dict[str, list[int]] = {}
        detectors: dict[str, set[str]] = {}
        for f in self.files:
            low, high = spans.setdefault(f.run, [f.gps_start, f.gps_start + f.duration])
            spans[f.run] = [min(low, f.gps_start), max(high, f.gps_start + f.duration)]
            detectors.setdefault(f.run, set()).add(f.ifo)
        return [{"name": run, "gps_start": low, "gps_end": high, "detectors": sorted(detectors[run]),
                 "detail_url": f"{self.host}/api/v2/runs/{run}"} for run, (low, high) in spans.items()]

    def run_files(self, run: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The run's files overlapping ``[start, stop)`` (GWOSC filters them; gwosc does not)."""
        detector = query.get("detector", [None])[0]
        start, stop = float(query.get("start", ["-inf"])[0]), float(query.get("stop", ["inf"])[0])
        rate = int(query.get("sample-rate", ["4"])[0])
        return [{"gps_start": f.gps_start, "detector": f.ifo, "sample_rate_kHz": float(rate),
                 "hdf5_url": self.host + f.url_path, "gwf_url": self.host + f.url_path[:-5] + ".gwf",
                 "detail_url": f"{self.host}/api/v2/strain-files/{f.ifo}-{f.gps_start}-{rate}kHz"}
                for f in self.files
                if f.run == run and detector in (None, f.ifo) and f.sample_rate // 1024 == rate
                and f.gps_start < stop and f.gps_start + f.duration > start]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                parts = url.path.strip("/").split("/")
                if url.path == "/api/v2/event-versions":
                    return self.json(_page([]))
                if url.path == "/api/v2/runs":
                    return self.json(_page(standin.runs()))
                if len(parts) == 5 and parts[:3] == ["api", "v2", "runs"] and parts[4] == "strain-files":
                    return self.json(_page(standin.run_files(parts[3], query)))
                for f in standin.files:
                    if f.url_path == url.path:
                        return self.file(f.path)
                self.send_error(404)

            def json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def file(self, path: Path) -> None:
                data = path.read_bytes()
                first = 0
                requested = self.headers.get("Range")
                if requested and requested.startswith("bytes=") and requested.endswith("-"):
                    first = int(requested[6:-1])
                    if first >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[first:]
                self.send_header("Content-Type", "application/x-hdf5")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                with standin.lock:
                    standin.downloads[path.name] += 1
                    standin.ranges.append(requested or "")
                    cut = standin.cuts > 0
                    standin.cuts -= cut
                self.send(body[: len(body) // 2] if cut else body)
                if cut:
                    self.close_connection = True

            def send(self, body: bytes) -> None:
                chunk = 1 << 16
                started = time.monotonic()
                for offset in range(0, len(body), chunk):
                    self.wfile.write(body[offset:offset + chunk])
                    with standin.lock:
                        standin.bytes_sent += len(body[offset:offset + chunk])
                    if standin.bandwidth:
                        ahead = (offset + chunk) / standin.bandwidth - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)

        return Handler
