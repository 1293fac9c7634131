"""Accounts and logins (panoptes-api.md §2): password sign-in with a session cookie, OAuth tokens.

Users and client applications persist in the store (passwords and secrets only as salted PBKDF2
hashes); sessions and tokens live in memory, so a restart logs everybody out, which the real server
may do as well and which keeps no bearer secret on disk.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, request

from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.store import Store, now
from glitchrun.embedded_panoptes.web import json_response

SESSION_COOKIE = "_panoptes_session"
#: zooniverse.org's own (first-party) OAuth application: the client id panoptes-client and the ``panoptes`` CLI
#: send by default (``Panoptes._endpoint_client_ids['default']``), registered here as it is there
FIRST_PARTY_CLIENT_ID = "ce310d45f951de68c4cc8ef46ca38cc0a008f607a2026680295757bfef99f43c"
#: ``lib/gem_ext/doorkeeper/application.rb`` ``allowed_grants``: a first-party application (this server's
#: own) may use the password grant; an application registered for client credentials is a ``secure`` one
FIRST_PARTY_GRANTS = frozenset({"client_credentials", "authorization_code", "password", "refresh_token"})
SECURE_GRANTS = frozenset({"client_credentials", "authorization_code", "refresh_token"})
PBKDF2_ROUNDS = 60_000
SCOPE = "public user project group collection classification subject medium organization translation"


def hash_secret(secret: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), PBKDF2_ROUNDS).hex()
    return f"pbkdf2_sha256${PBKDF2_ROUNDS}${salt}${digest}"


def check_secret(secret: str, stored: str) -> bool:
    _, rounds, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), int(rounds)).hex()
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True)
class Token:
    user_id: int
    expires_at: float


class Accounts:
    """Who is who: users, client applications, sessions and bearer tokens."""

    def __init__(self, store: Store, token_lifetime: int) -> None:
        self.store = store
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._sessions: dict[str, int] = {}
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, int] = {}

    def ensure_user(self, login: str, password: str | None = None, *, admin: bool = False) -> tuple[int, str]:
        """Create the account if missing, set its password (a random one when None), return (id, password)."""
        if not login or not login.strip():
            raise ValueError("a login must not be empty")
        password = password if password is not None else secrets.token_urlsafe(18)
        stamp = now()
        with self.store.tx() as db:
            row = db.execute("SELECT id FROM users WHERE login = ?", (login,)).fetchone()
            if row is None:
                user_id = db.execute(
                    "INSERT INTO users (login, display_name, password_hash, admin, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (login, login, hash_secret(password), int(admin), stamp, stamp),
                ).lastrowid
            else:
                user_id = row["id"]
                db.execute(
                    "UPDATE users SET password_hash = ?, admin = ?, updated_at = ? WHERE id = ?",
                    (hash_secret(password), int(admin), stamp, user_id),
                )
        return int(user_id), password

    def add_client_app(self, client_id: str, client_secret: str, login: str) -> None:
        """Let the client-credentials grant of ``client_id``/``client_secret`` act as ``login``."""
        with self.store.tx() as db:
            user = db.execute("SELECT id FROM users WHERE login = ?", (login,)).fetchone()
            if user is None:
                raise ValueError(f"no account {login!r}: call ensure_user first")
            db.execute(
                "INSERT OR REPLACE INTO client_apps (client_id, secret_hash, user_id) VALUES (?, ?, ?)",
                (client_id, hash_secret(client_secret), user["id"]),
            )

    # ------------------------------------------------------------------------------ requests
    def viewer(self, db: sqlite3.Connection) -> sqlite3.Row | None:
        """The user behind the request's bearer token; None without one; 401 for a bad or old one."""
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        with self._lock:
            grant = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at < time.time():
            raise ApiError(401, "The access token is invalid or has expired; log in again.")
        return db.execute("SELECT * FROM users WHERE id = ?", (grant.user_id,)).fetchone()

    def _user_by_password(self, login: str, password: str) -> sqlite3.Row | None:
        with self.store.tx() as db:
            user = db.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()
        return user if user is not None and check_secret(password, user["password_hash"]) else None

    def _issue(self, user_id: int, refreshable: bool) -> dict[str, object]:
        token = secrets.token_urlsafe(32)
        answer: dict[str, object] = {"access_token": token, "token_type": "Bearer",
                                     "expires_in": self.token_lifetime, "scope": SCOPE,
                                     "created_at": int(time.time())}
        with self._lock:
            # forget expired tokens (a client with a short lifetime gets a new one for every request)
            self._access = {t: g for t, g in self._access.items() if g.expires_at >= time.time()}
            self._access[token] = Token(user_id, time.time() + self.token_lifetime)
            if refreshable:
                answer["refresh_token"] = refresh = secrets.token_urlsafe(32)
                self._refresh[refresh] = user_id
        return answer

    def sign_in(self) -> Response:
        """POST /users/sign_in: 200 with the user and a session cookie, or 401 with a JSON ``error``."""
        body = request.get_json(silent=True) or {}
        user_doc = body.get("user") if isinstance(body, dict) else None
        login = user_doc.get("login") if isinstance(user_doc, dict) else None
        password = user_doc.get("password") if isinstance(user_doc, dict) else None
        user = self._user_by_password(login, password) if isinstance(login, str) and isinstance(password, str) else None
        if user is None:
            return json_response({"error": "Invalid login or password."}, 401)
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[session] = user["id"]
        response = json_response({"users": [{"id": str(user["id"]), "login": user["login"],
                                             "display_name": user["display_name"]}]})
        # not Secure: requests would never send a Secure cookie back over http://127.0.0.1 (§2.1)
        response.set_cookie(SESSION_COOKIE, session, path="/", httponly=True, samesite="Lax")
        return response

    def allowed_grants(self, client_id: str) -> frozenset[str]:
        """The grants of the OAuth application ``client_id`` (none for an unknown one)."""
        if client_id == FIRST_PARTY_CLIENT_ID:
            return FIRST_PARTY_GRANTS
        with self.store.tx() as db:
            known = db.execute("SELECT 1 FROM client_apps WHERE client_id = ?", (client_id,)).fetchone()
        return SECURE_GRANTS if known is not None else frozenset()

    def token(self) -> Response:
        """POST /oauth/token: the password (session cookie), refresh_token and client_credentials grants.

        ``app/controllers/tokens_controller.rb`` ``allowed_grants`` first: the ``client_id`` must be a known
        application allowed this grant, else 422 with an empty body (``head :unprocessable_entity``)."""
        form = request.form
        grant = form.get("grant_type", "")
        if grant not in self.allowed_grants(form.get("client_id", "")):
            return Response(status=422)
        user_id: int | None = None
        if grant == "password":
            with self._lock:
                user_id = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
            if user_id is None and form.get("login") and form.get("password"):
                user = self._user_by_password(form["login"], form["password"])
                user_id = user["id"] if user is not None else None
        elif grant == "refresh_token":
            with self._lock:
                user_id = self._refresh.pop(form.get("refresh_token", ""), None)
        elif grant == "client_credentials":
            user_id = self._client_user(form.get("client_id", ""), form.get("client_secret", ""))
        else:  # authorization_code: the browser flow, not served here
            return _grant_error(f"unsupported grant_type {grant!r}")
        if user_id is None:
            return _grant_error(f"the {grant} grant was refused: sign in again or check the credentials")
        return json_response(self._issue(user_id, refreshable=grant != "client_credentials"))

    def _client_user(self, client_id: str, client_secret: str) -> int | None:
        with self.store.tx() as db:
            app = db.execute("SELECT * FROM client_apps WHERE client_id = ?", (client_id,)).fetchone()
        if app is None or not check_secret(client_secret, app["secret_hash"]):
            return None
        return int(app["user_id"])


def _grant_error(message: str) -> Response:
    """Both keys: ``errors`` makes panoptes-client raise PanoptesAPIException, ``error`` is OAuth's (§2.1)."""
    return json_response({"error": "invalid_grant", "error_description": message,
                          "errors": [{"message": message}]}, 401)


def sign_in_page() -> Response:
    """GET /users/sign_in: the client only needs the X-CSRF-Token header (KeyError without it)."""
    return json_response({"login": "/users/sign_in"},
                         headers={"X-CSRF-Token": secrets.token_urlsafe(24), "X-CSRF-Param": "authenticity_token"})


def register(app: Flask, accounts: Accounts) -> None:
    app.add_url_rule("/users/sign_in", "sign_in_page", sign_in_page, methods=["GET"])
    app.add_url_rule("/users/sign_in", "sign_in", accounts.sign_in, methods=["POST"])
    app.add_url_rule("/oauth/token", "oauth_token", accounts.token, methods=["POST"])
