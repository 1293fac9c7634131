"""The embedded Panoptes as an attacker on this machine would try it: writes without a token, writes to
someone else's project, oversized bodies, malformed documents, and file names that try to leave the media
folder (plain, URL-encoded, double-encoded, backslashed, NUL-terminated), sent byte for byte with
http.client so that no client library tidies the path first. And it listens on 127.0.0.1 only."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from omegaconf import OmegaConf
from panoptes_client import Panoptes

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.zooniverse.backend import LocalBackend
from tests.embedded_panoptes.helpers import API, make_project, make_subject_set, png_bytes

CONF = Path(__file__).resolve().parents[2] / "conf"
MAX_UPLOAD = 4096
CANARY = b"canary: this file must never be served"
#: the headers of an upload PUT to Azure: its type, and the blob type Azure requires
BLOB = {"Content-Type": "image/png", "x-ms-blob-type": "BlockBlob"}


@dataclass
class Site:
    """A running server with alice's project, subject set and one uploaded subject, and bob, a stranger."""

    server: EmbeddedPanoptes
    alice: str  # bearer tokens
    bob: str
    project_id: str
    subject_set_id: str
    subject_id: str
    upload_path: str  # the signed upload URL's path and query
    media_name: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("server")
    (root / "canary.txt").write_bytes(CANARY)  # beside the storage folder
    with EmbeddedPanoptes(root / "panoptes", max_upload_bytes=MAX_UPLOAD) as server:
        (server.storage_dir / "canary.txt").write_bytes(CANARY)  # inside it, beside the database
        tokens = {}
        for login in ("alice", "bob"):
            _, password = server.ensure_user(login)
            tokens[login] = Panoptes(endpoint=server.endpoint, username=login, password=password)
        with tokens["alice"] as alice:
            project = make_project("Glitches", private=False)
            subject_set = make_subject_set(project)
            body, _ = alice.post("/subjects", json={"subjects": {
                "locations": ["image/png"], "links": {"project": project.id, "subject_sets": [subject_set.id]}}})
        upload = urlsplit(body["subjects"][0]["locations"][0]["image/png"])
        yield Site(server, tokens["alice"].get_bearer_token(), tokens["bob"].get_bearer_token(), str(project.id),
                   str(subject_set.id), body["subjects"][0]["id"], f"{upload.path}?{upload.query}",
                   upload.path.rsplit("/", 1)[1])


def send(site: Site, method: str, path: str, body: bytes | dict | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request with ``path`` exactly as given (with the Accept header of every API client); (status, body)."""
    address = urlsplit(site.server.endpoint)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    sent = {**API, **(headers or {})}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token:
        sent["Authorization"] = f"Bearer {token}"
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, data


def error_message(data: bytes) -> str:
    return json.loads(data)["errors"][0]["message"]


# -- statuses ------------------------------------------------------------------------------------------
def writes(site: Site) -> list[tuple[str, str, dict, int]]:
    """A write of every kind, each valid for alice, with what another user gets: a create linking alice's
    project is not linkable (422, lib/json_api_controller/relation_manager.rb), anything else of hers is
    not found (404, lib/json_api_controller/check_resources_exist.rb with project_policy.rb's WriteScope)."""
    return [
        ("POST", "/api/projects", {"projects": {"display_name": "Mine", "description": "d", "primary_language": "en",
                                                "private": False}}, 201),
        ("POST", "/api/subject_sets", {"subject_sets": {"display_name": "x", "links": {"project": site.project_id}}},
         422),
        ("POST", "/api/subjects", {"subjects": {"locations": ["image/png"], "links": {"project": site.project_id}}},
         422),
        ("PUT", f"/api/projects/{site.project_id}", {"projects": {"description": "changed"}}, 404),
        ("PUT", f"/api/subjects/{site.subject_id}", {"subjects": {"metadata": {"changed": True}}}, 404),
        ("POST", f"/api/subject_sets/{site.subject_set_id}/links/subjects", {"subjects": [site.subject_id]}, 404),
        ("DELETE", f"/api/subject_sets/{site.subject_set_id}/links/subjects/{site.subject_id}", {}, 404),
        ("DELETE", f"/api/subjects/{site.subject_id}", {}, 404),
        ("POST", f"/api/projects/{site.project_id}/classifications_export", {"media": {"content_type": "text/csv"}},
         404),
    ]


@pytest.mark.parametrize("who", [None, "expired", "bob"], ids=["no token", "unknown token", "another user"])
def test_writes_need_the_owners_token(site: Site, who: str | None) -> None:
    token = {"bob": site.bob, "expired": "not-a-token-the-server-issued"}.get(who or "")
    for method, path, body, stranger in writes(site)[who == "bob":]:  # bob may make a project of his own
        got, data = send(site, method, path, body, token, headers={"If-Match": '"any"'})
        assert got == (stranger if who == "bob" else 401), f"{method} {path} as {who}: {got} {data!r}"
        assert error_message(data)


@pytest.mark.parametrize("method,path,body,status,message", [
    ("GET", "/api/projects/999", None, 404, "Could not find project with id='999'"),
    ("GET", "/api/subjects/abc", None, 404, "Not Found"),  # lib/routes/json_api_routes.rb: ids are digits
    ("GET", "/api/nothing_here", None, 404, "Not Found"),
    ("POST", "/api/subjects", {"subjects": {"locations": ["text/html"], "links": {"project": "PROJECT"}}}, 400,
     "Locations is invalid"),
    ("POST", "/api/subjects", {"subjects": {"locations": ["image/png"]}}, 422,
     "did not contain a required property of 'links'"),
    ("POST", "/api/workflows", {"workflows": {"display_name": "w", "primary_language": "en", "links": {
        "project": "PROJECT"}, "retirement": {"criteria": "never_ever"}}}, 400, "Retirement criteria"),
    ("POST", "/api/projects", b"[not json", 422, "must be a JSON object"),
    ("PUT", "/api/projects/PROJECT", {"projects": {"description": "x"}}, 428, "If-Match"),
    ("POST", "/api/projects", {"projects": {"display_name": "Big", "description": "x" * MAX_UPLOAD}}, 413,
     "Request Entity Too Large"),
], ids=["unknown id", "bad id", "unknown route", "bad media type", "no project", "bad retirement", "not json",
        "no If-Match", "body too large"])
def test_bad_requests_get_the_right_4xx_and_a_json_message(site: Site, method: str, path: str, body: object,
                                                          status: int, message: str) -> None:
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace("PROJECT", site.project_id))
    got, data = send(site, method, path.replace("PROJECT", site.project_id), body, site.alice,
                     headers={"Content-Type": "application/json"})
    assert got == status and message in error_message(data), (got, data)


def test_an_upload_over_the_limit_is_413_and_not_stored(site: Site) -> None:
    got, data = send(site, "PUT", site.upload_path, b"x" * (MAX_UPLOAD + 1), headers=BLOB)
    assert got == 413 and error_message(data)
    assert not (site.server.storage_dir / "media" / "subject_location" / site.media_name).exists()


# -- paths ---------------------------------------------------------------------------------------------
TRICKS = [
    "../../canary.txt", "..%2F..%2Fcanary.txt", "%2e%2e%2f%2e%2e%2fcanary.txt",
    "%252e%252e%252f%252e%252e%252fcanary.txt",
    "..%5C..%5Ccanary.txt", "..\\..\\canary.txt", "....//....//canary.txt", "%2Fetc%2Fpasswd", "//etc/passwd",
    "..%2F..%2F..%2Fcanary.txt", "canary.txt%00.png", "..%c0%af..%c0%afcanary.txt", "~/canary.txt", ".",
]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "-wal" not in p.name
            and "-shm" not in p.name}


@pytest.mark.parametrize("trick", TRICKS)
def test_no_media_path_reaches_outside_the_media_folder(site: Site, trick: str) -> None:
    root = site.server.storage_dir.parent
    before = files_under(root)
    signature = site.upload_path.split("?")[1]
    attempts = [
        ("GET", f"/media/subject_location/{trick}", None),
        ("GET", f"/media/{trick}/1/{site.media_name}", None),
        ("GET", f"/media/project_classifications_export/1/{trick}", None),
        ("PUT", f"/upload/subject_location/{trick}?{signature}", png_bytes(1)),
        ("PUT", f"/upload/{trick}/{site.media_name}?{signature}", png_bytes(1)),
        ("GET", f"/{trick}", None),
    ]
    for method, path, body in attempts:
        status, data = send(site, method, path, body, headers={"Content-Type": "image/png"} if body else None)
        assert 400 <= status < 500, f"{method} {path}: {status}"
        assert CANARY not in data and b"SQLite format" not in data and b"root:" not in data, f"{method} {path}"
    assert files_under(root) == before, "a file was written or removed"


def test_a_signed_upload_url_works_for_its_own_name_only(site: Site) -> None:
    path, query = site.upload_path.split("?")
    other = f"{path[:-len(site.media_name)]}{'0' * 32}.png?{query}"
    assert send(site, "PUT", other, png_bytes(2), headers=BLOB)[0] == 403
    assert send(site, "PUT", path, png_bytes(2), headers=BLOB)[0] == 403  # unsigned
    assert send(site, "PUT", site.upload_path, png_bytes(2), headers=BLOB)[0] == 201
    assert send(site, "GET", f"/media/subject_location/{site.media_name}")[1] == png_bytes(2)


# -- where it listens ----------------------------------------------------------------------------------
def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None if it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def reachable(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_the_defaults_say_loopback(tmp_path: Path) -> None:
    assert OmegaConf.load(CONF / "backend" / "local.yaml").host == "127.0.0.1"
    assert OmegaConf.load(CONF / "job" / "serve.yaml").host == "127.0.0.1"
    assert LocalBackend(tmp_path).host == "127.0.0.1"


@pytest.mark.parametrize("settings,from_outside", [({}, False), ({"host": "0.0.0.0"}, True)],
                         ids=["default", "told otherwise"])
def test_it_listens_on_loopback_unless_told_otherwise(tmp_path: Path, settings: dict[str, str],
                                                      from_outside: bool) -> None:
    outward = outward_address()
    if outward is None:
        pytest.skip("this machine has no address but loopback to try from")
    with EmbeddedPanoptes(tmp_path / "panoptes", **settings) as server:
        port = urlsplit(server.endpoint).port
        assert reachable("127.0.0.1", port)
        assert reachable(outward, port) == from_outside, f"{settings}: reachable at {outward}:{port}?"
