"""``job=serve``: the embedded Panoptes standalone, until Ctrl-C (SIGINT) or SIGTERM.

Any Panoptes client can then use it through ``PANOPTES_ENDPOINT``. The owner account's password comes
from ``PANOPTES_PASSWORD`` when that is set (the user chose it); otherwise a random one is made and
printed once on stdout. It is never passed to ``logging`` (Hydra copies log records into the run
directory) and never written to a file.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.zooniverse.backend import LocalBackend

log = logging.getLogger(__name__)


class Serve:
    """Serve ``backend``'s embedded Panoptes (its owner, accounts, faults, token lifetime) on ``host:port``."""

    def __init__(self, backend: LocalBackend, host: str = "127.0.0.1", port: int = 8765,
                 storage_dir: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(backend, LocalBackend):
            raise ValueError("job=serve runs the embedded Panoptes; use it with backend=local")
        self.backend = backend
        self.host = host
        self.port = port
        self.storage_dir = Path(storage_dir if storage_dir is not None else backend.storage_dir)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Make ``run()`` return (what SIGINT and SIGTERM do)."""
        self._stop.set()

    def run(self) -> str:
        """Serve until stopped; returns the endpoint it served at."""
        backend = self.backend
        server = EmbeddedPanoptes(self.storage_dir, host=self.host, port=self.port, faults=backend.faults,
                                  rules=backend.rules, token_lifetime=backend.token_lifetime, threads=backend.threads)
        restore = self._handle_signals()
        try:
            with server:
                chosen = os.environ.get("PANOPTES_PASSWORD") or None
                _, password = server.ensure_user(backend.owner, chosen)
                for login in backend.accounts:
                    server.ensure_user(login)
                log.info("embedded Panoptes serving at %s (data in %s), owner account %s",
                         server.endpoint, self.storage_dir.resolve(), backend.owner)
                generated = None if chosen else password
                print(banner(server.endpoint, self.storage_dir, backend.owner, generated), flush=True)
                while not self._stop.wait(0.5):
                    pass
                log.info("embedded Panoptes at %s stopped", server.endpoint)
                return server.endpoint
        finally:
            restore()

    def _handle_signals(self) -> Callable[[], None]:
        """Let SIGINT/SIGTERM stop the server cleanly; returns what puts the old handlers back.
        (Only the main thread may set handlers; elsewhere, e.g. in a test thread, call ``stop()``.)"""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def banner(endpoint: str, storage_dir: Path, login: str, generated_password: str | None) -> str:
    """What a user needs to point panoptes-client or the official CLI at the server."""
    password_line = (f"export PANOPTES_PASSWORD={generated_password}   # generated; shown only here"
                     if generated_password else "# PANOPTES_PASSWORD: the one already set in your environment")
    return "\n".join([
        f"Embedded Panoptes serving at {endpoint} (data in {storage_dir.resolve()}). Ctrl-C stops it.",
        f"Point panoptes-client at it (glitchrun itself: backend=zooniverse backend.endpoint={endpoint}):",
        f"  export PANOPTES_ENDPOINT={endpoint}",
        f"  export PANOPTES_USERNAME={login}",
        f"  {password_line}",
        "The official panoptes CLI reads only --endpoint and ~/.panoptes/config.yml: run `panoptes configure`",
        "once with the username and password above, then for example:",
        f"  panoptes --endpoint {endpoint} project ls",
    ])
