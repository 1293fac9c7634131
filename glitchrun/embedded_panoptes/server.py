"""``EmbeddedPanoptes``: the Flask application served by waitress in a background thread.

waitress is pure Python and multi-threaded, which ``Subject.async_saves()`` needs (5 parallel saves,
each with parallel uploads). Port 0 binds a free port; ``endpoint`` says which one. Everything lives
under ``storage_dir`` (``panoptes.sqlite3`` and ``media/``), so a restart on the same folder keeps
users, projects and subjects, and ids continue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import waitress
from flask import Flask, Response
from waitress import wasyncore
from werkzeug.exceptions import HTTPException

from glitchrun.embedded_panoptes import api, auth
from glitchrun.embedded_panoptes.auth import Accounts
from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.faults import Faults, WSGIApp
from glitchrun.embedded_panoptes.media import Media
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.embedded_panoptes.store import Store
from glitchrun.embedded_panoptes.web import RouteNotFound, error_response, not_routed
from glitchrun.embedded_panoptes.worker import Worker

log = logging.getLogger(__name__)

#: the largest request body (a media upload); Zooniverse itself recommends images under 1 MB
DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024


def collapse_slashes(app: WSGIApp) -> WSGIApp:
    """``ENDPOINT/`` + ``/api`` gives ``//api``; repeated and trailing slashes are dropped before routing."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = re.sub(r"/{2,}", "/", environ.get("PATH_INFO", "/"))
        environ["PATH_INFO"] = path.rstrip("/") or "/"
        return app(environ, start_response)

    return wrapped


def create_app(server: EmbeddedPanoptes) -> Flask:
    """The Flask application: sign-in and token pages, media files and the ``/api`` routes."""
    app = Flask("glitchrun.embedded_panoptes")
    app.config["MAX_CONTENT_LENGTH"] = server.max_upload_bytes
    auth.register(app, server.accounts)
    server.media.register(app)
    api.register(app, server.store, server.accounts.viewer, server.media, server.rules)

    @app.errorhandler(ApiError)
    def expected(error: ApiError) -> Response:
        return error_response(error.status, error.message)

    @app.errorhandler(RouteNotFound)
    def unrouted(error: RouteNotFound) -> Response:
        return not_routed()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:  # unknown routes (404), methods (405), size (413)
        if error.code == 404:
            return not_routed()
        return error_response(error.code or 400, f"{error.name}: {error.description}")

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("embedded Panoptes: unexpected error")
        return error_response(500, f"internal error in the embedded Panoptes: {error!r}")

    return app


class EmbeddedPanoptes:
    """A Panoptes (Zooniverse API) server on ``host``, speaking the wire contract of panoptes-client 1.7.1."""

    def __init__(
        self,
        storage_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Mapping[str, Any] | None = None,
        token_lifetime: int = 7200,
        threads: int = 16,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        rules: Rules | Mapping[str, Any] | None = None,
    ) -> None:
        self.storage_dir = Path(storage_dir)
        self.host = host
        self.port = port
        self.token_lifetime = token_lifetime
        self.threads = threads
        self.max_upload_bytes = max_upload_bytes
        self.faults = Faults(faults)
        self.rules = Rules.of(rules)
        self._server: Any = None
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddedPanoptes:
        """Open the storage, bind (port 0 = a free port) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"the embedded Panoptes is already running at {self.endpoint}")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.storage_dir)
        self.accounts = Accounts(self.store, self.token_lifetime)
        self.media = Media(self.store)
        self._worker = None
        if Worker.needed(self.store, self.rules):
            self._worker = Worker(self.store, self.rules)
            self._worker.run_due()  # what fell due while the server was stopped, before the first request
            self._worker.start()
        application = collapse_slashes(self.faults.wrap(create_app(self)))
        # waitress warns "Task queue depth" whenever a request waits a moment for a free thread; for a
        # server embedded in a job that is noise in the job's log, not news
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._server = waitress.create_server(
            application, host=self.host, port=self.port, threads=self.threads, ident="glitchrun-embedded-panoptes"
        )
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, args=(self._server,),
                                        name=f"panoptes:{self._server.effective_port}", daemon=True)
        self._thread.start()
        return self

    def _serve(self, server: Any) -> None:
        """waitress's own loop, but one that ends when asked and closes every socket from this thread.

        (waitress's ``run()`` only ends once its socket map is empty, and closing sockets from another
        thread races with its ``select``.) The short poll timeout bounds how long ``stop()`` waits."""
        while not self._stopping.is_set() and server._map:
            wasyncore.loop(timeout=0.2, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
        wasyncore.close_all(server._map)

    def stop(self) -> None:
        """Close every connection, let running requests finish, close the database."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):  # only a wake-up call: the loop also sees the flag within 0.2 s
            server.pull_trigger()
        if self._thread is not None:
            self._thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=10)
        if self._worker is not None:
            self._worker.stop()
        self.store.close()

    def __enter__(self) -> EmbeddedPanoptes:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT``, what clients take as ``PANOPTES_ENDPOINT``."""
        if self._server is None:
            raise RuntimeError("the embedded Panoptes is not running: call start() first")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self._server.effective_port}"

    # ------------------------------------------------------------------------------ accounts
    def ensure_user(self, login: str, password: str | None = None, *, admin: bool = False) -> tuple[int, str]:
        """Create the account if missing, set its password (a random one when None), return (id, password)."""
        return self._accounts().ensure_user(login, password, admin=admin)

    def add_client_app(self, client_id: str, client_secret: str, login: str) -> None:
        """Let the client-credentials grant of this id and secret act as the account ``login``."""
        self._accounts().add_client_app(client_id, client_secret, login)

    def _accounts(self) -> Accounts:
        if self._server is None:
            raise RuntimeError("the embedded Panoptes is not running: call start() first")
        return self.accounts

    @property
    def fault_counts(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        return dict(self.faults.counts)
