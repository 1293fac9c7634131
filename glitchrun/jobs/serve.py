"""``job=serve``: the embedded Panoptes standalone and the campaign page beside it, until Ctrl-C (SIGINT) or SIGTERM.

Any Panoptes client can then use the server through ``PANOPTES_ENDPOINT``; a browser shows the campaign
(glitchrun.page, read-only) at the page's address. With ``backend=zooniverse`` only the page is served. The owner account's password comes
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
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.page.app import CampaignPage
from glitchrun.zooniverse.backend import LocalBackend

log = logging.getLogger(__name__)


class Serve:
    """Serve ``backend``'s embedded Panoptes (its owner, accounts, faults, token lifetime) on ``host:port`` when it
    is a ``LocalBackend`` (anything else, e.g. backend=zooniverse or None: the page alone), and, with ``page``, the
    page of ``campaign`` on ``host:page_port``."""

    def __init__(self, backend: Any, campaign: dict[str, Any] | None = None, host: str = "127.0.0.1",
                 port: int = 8765, storage_dir: str | os.PathLike[str] | None = None, page: bool = True,
                 page_port: int = 8766) -> None:
        self.panoptes = isinstance(backend, LocalBackend)
        if not self.panoptes and not page:
            raise ValueError("with this backend job=serve serves only the campaign page, and job.page=false turns "
                             "that off; the embedded Panoptes needs backend=local")
        if page and campaign is None:
            raise ValueError("job=serve needs the campaign (its state_dir and name) to serve its page")
        self.backend = backend
        self.campaign = campaign
        self.host = host
        self.port = port
        self.storage_dir = Path(storage_dir if storage_dir is not None else backend.storage_dir) if self.panoptes else None
        self.page = page
        self.page_port = page_port
        self._stop = threading.Event()

    def stop(self) -> None:
        """Make ``run()`` return (what SIGINT and SIGTERM do)."""
        self._stop.set()

    def run(self) -> list[str]:
        """Serve until stopped; returns the addresses it served at (the Panoptes endpoint, the page)."""
        restore = self._handle_signals()
        try:
            with ExitStack() as serving:
                served = []
                if self.panoptes:
                    served.append(self.start_panoptes(serving))
                if self.page:
                    state_dir = Path(self.campaign["state_dir"])
                    page = serving.enter_context(CampaignPage(state_dir, self.campaign["name"], self.host,
                                                              self.page_port))
                    log.info("campaign page at %s (state in %s)", page.url, state_dir.resolve())
                    print(f"Campaign page (read-only) at {page.url} (state in {state_dir.resolve()}). "
                          "Open it in a browser; Ctrl-C stops it.", flush=True)
                    served.append(page.url)
                while not self._stop.wait(0.5):
                    pass
                log.info("stopped serving %s", ", ".join(served))
                return served
        finally:
            restore()

    def start_panoptes(self, serving: ExitStack) -> str:
        """Start the embedded Panoptes (stopped when ``serving`` closes), make its accounts, print how to use it."""
        backend = self.backend
        server = serving.enter_context(EmbeddedPanoptes(
            self.storage_dir, host=self.host, port=self.port, faults=backend.faults, rules=backend.rules,
            token_lifetime=backend.token_lifetime, threads=backend.threads))
        chosen = os.environ.get("PANOPTES_PASSWORD") or None
        _, password = server.ensure_user(backend.owner, chosen)
        for login in backend.accounts:
            server.ensure_user(login)
        log.info("embedded Panoptes serving at %s (data in %s), owner account %s",
                 server.endpoint, self.storage_dir.resolve(), backend.owner)
        generated = None if chosen else password
        print(banner(server.endpoint, self.storage_dir, backend.owner, generated), flush=True)
        return server.endpoint

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
