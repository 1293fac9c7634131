"""Where Zooniverse is: the embedded Panoptes on 127.0.0.1 (default) or zooniverse.org.

Both backends hand out the same thing, a logged-in ``panoptes_client.Panoptes`` inside a ``Connection``,
so every job runs one code path against either. Credentials are read from the environment at connect
time and never stored in the config tree, a log record or a file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoptes_client import Panoptes

from glitchrun.zooniverse.retry import Retry

log = logging.getLogger(__name__)


ZOONIVERSE_ENDPOINT = "https://www.zooniverse.org"
#: the OAuth client id glitchrun's clients of the embedded server send: zooniverse.org's first-party application,
#: which the embedded server knows as zooniverse.org does (an unknown client id gets 422)
LOCAL_CLIENT_ID = Panoptes._endpoint_client_ids["default"]


class CredentialsError(RuntimeError):
    """No usable Zooniverse credentials in the environment."""


class Client(Panoptes):
    """``panoptes_client.Panoptes`` with glitchrun's retries and thread-safe token renewal.

    Retries: the requests panoptes-client itself would retry (model GETs, link POSTs and DELETEs, all safe
    to repeat) are retried by ``retry`` instead of the client's fixed 5 tries over about 40 s, and after a
    dropped connection too, which the client does not retry at all.

    Tokens: jobs share one logged-in client between their threads (``with client:``). When the token is
    due, two threads renewing it at once would spend the same refresh token twice: the server refuses the
    second (401) and that thread's request fails. Serialised, the second thread finds the token renewed.
    """

    def __init__(self, *args: Any, retry: Retry = Retry(), **kwargs: Any) -> None:
        self.retry = retry
        self._token_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_bearer_token(self) -> str | None:
        with self._token_lock:
            return super().get_bearer_token()

    def http_request(self, method: str, path: str, params: dict | None = None, headers: dict | None = None,
                     json: Any = None, etag: str | None = None, endpoint: str | None = None,
                     retry: bool = False) -> Any:
        def once() -> Any:
            return super(Client, self).http_request(method, path, dict(params or {}), dict(headers or {}), json,
                                                    etag, endpoint, retry=False)

        return self.retry(once) if retry else once()

    @classmethod
    def local(cls, endpoint: str, login: str, password: str, retry: Retry = Retry()) -> Client:
        """A client signed in to the embedded server as ``login``, deaf to ``PANOPTES_*`` in the environment.

        Those variables hold the user's zooniverse.org credentials: left alone, panoptes-client would send a
        ``PANOPTES_CLIENT_ID``/``PANOPTES_CLIENT_SECRET`` pair to the embedded server instead of ``password``.
        """
        client = cls(endpoint=endpoint, username=login, password=password, client_id=LOCAL_CLIENT_ID, retry=retry)
        client.client_secret = None
        client.redirect_url = None
        return client


@dataclass
class Connection:
    """A logged-in client and what jobs need to know about where it points."""

    endpoint: str
    login: str | None
    client: Client
    #: the embedded server when ``backend=local`` (the crowd simulation adds volunteer accounts to it)
    server: Any = None
    volunteers: dict[str, Panoptes] = field(default_factory=dict)

    def as_user(self, login: str) -> Panoptes:
        """A client logged in as another account of the embedded server (made on first use)."""
        if self.server is None:
            raise RuntimeError("other accounts exist only on the embedded backend (backend=local)")
        if login not in self.volunteers:
            _, password = self.server.ensure_user(login)
            self.volunteers[login] = Client.local(self.endpoint, login, password, self.client.retry)
        return self.volunteers[login]


class LocalBackend:
    """The embedded Panoptes, started in-process on a free port of 127.0.0.1 for the job's lifetime.

    The owner account is made on first use; its password is random, rotated at every start and held only
    in memory, so there is nothing to configure and nothing to leak.
    """

    def __init__(
        self,
        storage_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        owner: str = "glitchrun",
        accounts: list[str] | None = None,
        faults: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
        token_lifetime: int = 7200,
        threads: int = 16,
        retries: int = 4,
        backoff: float = 2.5,
    ) -> None:
        self.storage_dir = Path(storage_dir)
        self.host = host
        self.port = port
        self.owner = owner
        self.accounts = list(accounts or [])
        self.faults = dict(faults or {})
        #: the real server's limits (export rate, subject upload limit); real values when not given
        self.rules = dict(rules or {})
        self.token_lifetime = token_lifetime
        self.threads = threads
        self.retry = Retry(retries, backoff)

    def server(self) -> Any:
        """The (not yet started) embedded server this backend runs."""
        from glitchrun.embedded_panoptes import EmbeddedPanoptes

        return EmbeddedPanoptes(
            self.storage_dir,
            host=self.host,
            port=self.port,
            faults=self.faults,
            rules=self.rules,
            token_lifetime=self.token_lifetime,
            threads=self.threads,
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.server() as server:
            _, password = server.ensure_user(self.owner)
            for login in self.accounts:
                server.ensure_user(login)
            client = Client.local(server.endpoint, self.owner, password, self.retry)
            log.info("embedded Panoptes at %s (data in %s), logged in as %s", server.endpoint, self.storage_dir, self.owner)
            with client:  # this thread's client until the job is done (a new Panoptes() would read PANOPTES_*)
                yield Connection(endpoint=server.endpoint, login=self.owner, client=client, server=server)


class ZooniverseBackend:
    """zooniverse.org (or another Panoptes at ``endpoint``) with credentials from the environment."""

    USER_VARS = ("PANOPTES_USERNAME", "PANOPTES_PASSWORD")
    CLIENT_VARS = ("PANOPTES_CLIENT_ID", "PANOPTES_CLIENT_SECRET")

    def __init__(self, endpoint: str = ZOONIVERSE_ENDPOINT, retries: int = 4, backoff: float = 2.5) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.retry = Retry(retries, backoff)

    def credentials(self) -> dict[str, str]:
        """Keyword arguments for ``Panoptes.connect``, read now from the environment."""
        env = os.environ
        if env.get("PANOPTES_CLIENT_ID") and env.get("PANOPTES_CLIENT_SECRET"):
            return {"client_id": env["PANOPTES_CLIENT_ID"], "client_secret": env["PANOPTES_CLIENT_SECRET"]}
        if env.get("PANOPTES_USERNAME") and env.get("PANOPTES_PASSWORD"):
            return {"username": env["PANOPTES_USERNAME"], "password": env["PANOPTES_PASSWORD"]}
        raise CredentialsError(
            "backend=zooniverse needs credentials in the environment: set PANOPTES_USERNAME and "
            "PANOPTES_PASSWORD (or PANOPTES_CLIENT_ID and PANOPTES_CLIENT_SECRET). They are never "
            "read from the config or the command line, so they cannot end up in .hydra/ or the logs."
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        credentials = self.credentials()
        client = Client(endpoint=self.endpoint, retry=self.retry, **credentials)
        # not the login: it is one of the credentials, which stay out of logs and files
        log.info("connected to %s with the %s from the environment", self.endpoint,
                 "user name and password" if "username" in credentials else "client id and secret")
        with client:
            yield Connection(endpoint=self.endpoint, login=credentials.get("username"), client=client)
