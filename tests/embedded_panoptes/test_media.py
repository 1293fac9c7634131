"""Media files: uploads are size-limited and signed, and no URL reaches outside the media folder."""

from __future__ import annotations

from pathlib import Path

import requests
from panoptes_client import Panoptes

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import make_project, png_bytes


def upload_url(client: Panoptes, project_id: str) -> tuple[str, str]:
    """(upload URL, subject id) of a new subject with one PNG location, made with a raw POST."""
    new_subject = {"subjects": {"locations": ["image/png"], "links": {"project": project_id}}}
    body, _ = client.post("/subjects", json=new_subject)
    subject = body["subjects"][0]
    return subject["locations"][0]["image/png"], subject["id"]


def test_an_upload_over_the_limit_is_413_and_not_stored(tmp_path: Path) -> None:
    with EmbeddedPanoptes(tmp_path / "panoptes", max_upload_bytes=1000) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            url, subject_id = upload_url(client, make_project().id)
            blob = {"Content-Type": "image/png", "x-ms-blob-type": "BlockBlob"}
            too_big = requests.put(url, data=b"x" * 2000, headers=blob, timeout=10)
            assert too_big.status_code == 413 and "errors" in too_big.json()
            get_url = client.get(f"/subjects/{subject_id}")[0]["subjects"][0]["locations"][0]["image/png"]
            assert requests.get(get_url, timeout=10).status_code == 404
            assert requests.put(url, data=png_bytes(1), headers=blob, timeout=10).ok
            assert requests.get(get_url, timeout=10).content == png_bytes(1)


def test_uploads_need_the_signature_and_names_cannot_escape(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    url, _ = upload_url(owner, make_project().id)
    unsigned = url.split("?")[0]
    assert requests.put(unsigned, data=b"data", timeout=10).status_code == 403
    assert requests.put(url + "0", data=b"data", timeout=10).status_code == 403
    for trick in ("..%2Fpanoptes.sqlite3", "%2E%2E%2F%2E%2E%2Fpanoptes.sqlite3", "x.png%00.png"):
        response = requests.get(f"{server.endpoint}/media/subject_location/{trick}", timeout=10)
        assert response.status_code == 404 and b"SQLite" not in response.content
        assert requests.put(f"{server.endpoint}/upload/subject_location/{trick}?sig=x", data=b"x",
                            timeout=10).status_code == 404
    assert sorted(p.name for p in server.storage_dir.iterdir()) == sorted(
        ["media", "panoptes.sqlite3", "panoptes.sqlite3-shm", "panoptes.sqlite3-wal"])
