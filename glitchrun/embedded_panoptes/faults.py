"""Fault injection for reliability tests: latency, 503s, writes that commit and then fail, dropped
connections, uploads that are acknowledged but lost.

It is WSGI middleware around the whole application, so no route knows about it. Settings can change
while the server runs (``server.faults.update(error_rate=0.2)``), and every injected fault is counted
(``server.fault_counts``) for reliability reports. Each kind of fault draws from a seeded generator
of its own, so the n-th request that could meet a fault of that kind meets it or not whatever the
threads' interleaving and the other kinds' draws: a seeded run injects every kind it is sure to reach.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from waitress.channel import ClientDisconnected

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
RATES = ("error_rate", "error_after_commit_rate", "drop_rate", "lost_upload_rate")
KEYS = ("seed", "latency_ms", *RATES)
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


class Faults:
    """The fault settings (keys of ``conf/backend/local.yaml`` ``faults``) and the injected counts."""

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self.settings: dict[str, float] = {key: 0.0 for key in KEYS}
        self.counts: dict[str, int] = {"latency": 0, "error": 0, "error_after_commit": 0, "drop": 0, "lost_upload": 0}
        self._random = _streams(0)
        self.update(settings or {})

    def update(self, settings: Mapping[str, Any] | None = None, **changes: Any) -> None:
        """Change some settings now; a ``seed`` restarts the random draws."""
        merged = {**(settings or {}), **changes}
        unknown = sorted(set(merged) - set(KEYS))
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {list(KEYS)}")
        for key in RATES:
            if key in merged and not 0.0 <= float(merged[key]) <= 1.0:
                raise ValueError(f"faults.{key} must be between 0 and 1, not {merged[key]}")
        if float(merged.get("latency_ms", 0)) < 0:
            raise ValueError("faults.latency_ms must not be negative")
        with self._lock:
            self.settings.update({key: float(value) for key, value in merged.items()})
            if "seed" in merged:
                self._random = _streams(int(merged["seed"]))

    def _fires(self, rate_key: str, count_key: str) -> bool:
        with self._lock:
            rate = self.settings[rate_key]
            fired = rate > 0 and self._random[rate_key].random() < rate
            if fired:
                self.counts[count_key] += 1
            return fired

    def wrap(self, app: WSGIApp) -> WSGIApp:
        """The application with faults injected in front of it."""

        def faulty(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
            is_api = path == "/api" or path.startswith("/api/")
            is_upload = method == "PUT" and path.startswith("/upload/")
            latency = self.settings["latency_ms"]
            if latency > 0:
                with self._lock:
                    self.counts["latency"] += 1
                time.sleep(latency / 1000)
            if (is_api or is_upload) and self._fires("drop_rate", "drop"):
                raise ClientDisconnected("injected fault: connection dropped")  # waitress closes it, unanswered
            if is_api and self._fires("error_rate", "error"):
                return _unavailable(start_response, "injected fault: service unavailable")
            if is_upload and self._fires("lost_upload_rate", "lost_upload"):
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                start_response("201 Created", [("Content-Length", "0")])
                return [b""]
            if is_api and method in WRITE_METHODS and self.settings["error_after_commit_rate"] > 0:
                return self._after_commit(app, environ, start_response)
            return app(environ, start_response)

        return faulty

    def _after_commit(
        self, app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Run the write; if it succeeded and the draw says so, throw its answer away and send 503."""
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured[:] = [status, headers]
            return lambda data: None

        result = app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, headers = captured
        if int(status.split()[0]) < 400 and self._fires("error_after_commit_rate", "error_after_commit"):
            return _unavailable(start_response, "injected fault: the write was committed, then the answer failed")
        start_response(status, headers)
        return [body]


def _streams(seed: int) -> dict[str, random.Random]:
    """One generator per kind of fault, each seeded from ``seed`` and the kind."""
    return {key: random.Random(f"{seed}:{key}") for key in RATES}


def _unavailable(start_response: Callable[..., Any], message: str) -> Iterable[bytes]:
    body = json.dumps({"errors": [{"message": message}]}).encode()
    start_response("503 Service Unavailable",
                   [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
