"""Logging in as panoptes-client does it: sign-in page and cookie, password, refresh and client-credentials
grants, and what the server answers for a bad password or a stale token."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from panoptes_client import Panoptes, Project, User
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import API, make_project


def test_connect_and_me(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    me = User.me()
    assert me.login == "alice"
    assert int(me.id) == owner.logged_in_user_id
    assert [u.id for u in User.where(login="ALICE")] == [me.id]
    body, _ = owner.get("/me")
    assert body["users"][0]["login"] == "alice"


def test_bad_password_raises_the_servers_message(server: EmbeddedPanoptes) -> None:
    server.ensure_user("alice", "right-password")
    with pytest.raises(PanoptesAPIException, match="Invalid login or password"):
        Panoptes(endpoint=server.endpoint, username="alice", password="wrong-password")
    assert Panoptes(endpoint=server.endpoint, username="alice", password="right-password").logged_in


def test_ensure_user_keeps_the_id_and_resets_the_password(server: EmbeddedPanoptes) -> None:
    first_id, first = server.ensure_user("carol")
    second_id, second = server.ensure_user("carol")
    assert first_id == second_id and first != second
    with pytest.raises(PanoptesAPIException):
        Panoptes(endpoint=server.endpoint, username="carol", password=first)


def test_an_expiring_token_is_refreshed(tmp_path: Path) -> None:
    # the client renews 120 s before expiry, so a 121 s lifetime makes it renew after one second
    with EmbeddedPanoptes(tmp_path / "panoptes", token_lifetime=121) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            assert User.me().login == "alice"
            first_token, first_refresh = client.bearer_token, client.refresh_token
            client.session.cookies.clear()  # from now on only the refresh grant can give a token
            time.sleep(1.1)
            make_project()
            assert client.bearer_token != first_token and client.refresh_token != first_refresh
        stale = requests.post(f"{server.endpoint}/oauth/token", timeout=10, data={
            "grant_type": "refresh_token", "refresh_token": first_refresh, "client_id": client.client_id})
        assert stale.status_code == 401 and stale.json()["errors"][0]["message"]


def test_an_expired_or_unknown_token_is_401(tmp_path: Path) -> None:
    with EmbeddedPanoptes(tmp_path / "panoptes", token_lifetime=2) as server:
        _, password = server.ensure_user("alice")
        client = Panoptes(endpoint=server.endpoint, username="alice", password=password)
        token = client.get_bearer_token()
        url = f"{server.endpoint}/api/projects"
        assert requests.get(url, headers={**API, "Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        time.sleep(2.1)
        expired = requests.get(url, headers={**API, "Authorization": f"Bearer {token}"}, timeout=10)
        assert expired.status_code == 401 and "expired" in expired.json()["errors"][0]["message"]
        assert requests.get(url, headers={**API, "Authorization": "Bearer nonsense"}, timeout=10).status_code == 401


def test_client_credentials_act_as_the_mapped_user(server: EmbeddedPanoptes) -> None:
    alice_id, _ = server.ensure_user("alice")
    server.add_client_app("campaign-app", "s3cret", "alice")
    with Panoptes(endpoint=server.endpoint, client_id="campaign-app", client_secret="s3cret") as client:
        project = make_project()
        assert client.logged_in and client.logged_in_user_id is None
    with Panoptes(endpoint=server.endpoint):
        assert Project.find(project.id).raw["links"]["owner"]["id"] == str(alice_id)
    wrong = Panoptes(endpoint=server.endpoint, client_id="campaign-app", client_secret="wrong")
    with wrong, pytest.raises(PanoptesAPIException, match="client_credentials grant was refused"):
        make_project("never made")
