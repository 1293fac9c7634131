"""Media files (panoptes-api.md §6.1, §9.1): subject uploads and export CSVs under ``<storage_dir>/media/``.

File names are made here (a random hex name plus an extension from the MIME type) and checked
against a strict pattern before any path is built, so no request can reach outside the media folder.
Upload URLs are signed (HMAC, key per process): the PUT carries no credentials (§6.1 step 2), so
the signature is what stops another local process from writing files. Stored rows hold bare names;
absolute URLs are built per request from the address the client used, so they survive a restart on
another port.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import uuid
from pathlib import Path

from flask import Flask, Response, request, send_file

from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.store import Store

UPLOADS = "subject_location"
EXPORTS = "exports"
NAME = re.compile(r"[0-9a-f]{32}\.[a-z0-9]{1,5}")
#: ``app/models/medium.rb`` ALLOWED_CONTENT_TYPES, in its order, with the file extension stored uploads get
EXTENSIONS = {
    "application/json": "json", "application/pdf": "pdf", "audio/aac": "aac", "audio/midi": "mid",
    "audio/x-midi": "mid", "audio/mp3": "mp3", "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/mpeg": "mp3",
    "audio/wav": "wav", "image/jpeg": "jpeg", "image/gif": "gif", "image/png": "png", "image/tiff": "tiff",
    "image/x-icon": "ico", "image/svg+xml": "svg", "text/csv": "csv", "text/plain": "txt", "video/mp4": "mp4",
    "video/mpeg": "mpeg",
}
CSV_TYPE = "text/csv; charset=utf-8"
#: Azure Blob Storage's answer to a Put Blob without ``x-ms-blob-type``
MISSING_BLOB_TYPE = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>MissingRequiredHeader</Code><Message>An '
                     "HTTP header that's mandatory for this request is not specified.</Message>"
                     "<HeaderName>x-ms-blob-type</HeaderName></Error>")


class Media:
    """Names, paths, URLs and the HTTP routes of stored media."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._key = secrets.token_bytes(32)
        for folder in (UPLOADS, EXPORTS):
            (store.media_dir / folder).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def new_name(extension: str) -> str:
        return f"{uuid.uuid4().hex}.{extension}"

    def path(self, folder: str, name: str) -> Path:
        """The file of a generated name; 404 for any other name (no ``..``, no slashes, no absolute paths)."""
        if not NAME.fullmatch(name):
            raise ApiError(404, f"no such media file {name!r}")
        return self.store.media_dir / folder / name

    def _signature(self, name: str) -> str:
        return hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()[:32]

    def upload_url(self, base_url: str, name: str) -> str:
        return f"{base_url}/upload/{UPLOADS}/{name}?sig={self._signature(name)}"

    @staticmethod
    def location_url(base_url: str, name: str) -> str:
        return f"{base_url}/media/{UPLOADS}/{name}"

    @staticmethod
    def export_url(base_url: str, media_type: str, linked_id: int, name: str) -> str:
        return f"{base_url}/media/{media_type}/{linked_id}/{name}"

    def write(self, folder: str, name: str, data: bytes) -> None:
        """Write atomically, so a reader never sees half a file."""
        target = self.path(folder, name)
        partial = target.with_name(f".{name}.{secrets.token_hex(4)}.part")
        partial.write_bytes(data)
        os.replace(partial, target)

    def remove(self, folder: str, names: list[str]) -> None:
        for name in names:
            self.path(folder, name).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ routes
    def put_upload(self, name: str) -> Response:
        """PUT of a subject location's bytes as Azure Blob Storage takes it (the real upload URLs are signed
        Azure URLs): ``x-ms-blob-type`` is required (400 ``MissingRequiredHeader``), success is 201 with no
        body."""
        target = self.path(UPLOADS, name)
        if not hmac.compare_digest(request.args.get("sig", ""), self._signature(name)):
            raise ApiError(403, "the upload URL's signature is missing or wrong")
        if not request.headers.get("x-ms-blob-type"):
            return Response(MISSING_BLOB_TYPE, 400, content_type="application/xml")
        data = request.get_data()  # over MAX_CONTENT_LENGTH: 413 before anything is stored
        self.write(UPLOADS, target.name, data)  # outside the lock: parallel uploads write in parallel
        with self.store.tx() as db:
            updated = db.execute(
                "UPDATE locations SET content_type = COALESCE(?, mime) WHERE media_name = ?",
                (request.headers.get("Content-Type"), name),
            ).rowcount
        if not updated:
            target.unlink(missing_ok=True)
            raise ApiError(404, f"no subject location {name!r} awaits an upload (was the subject deleted?)")
        return Response(status=201)

    def get_location(self, name: str) -> Response:
        """The stored bytes of a subject location, with the Content-Type they were uploaded with."""
        path = self.path(UPLOADS, name)
        with self.store.tx() as db:
            row = db.execute("SELECT content_type FROM locations WHERE media_name = ?", (name,)).fetchone()
        if row is None or row["content_type"] is None or not path.is_file():
            raise ApiError(404, f"no media {name!r} (never uploaded, or the subject was deleted)")
        return send_file(path, mimetype=row["content_type"], conditional=False, etag=False)

    def get_export(self, media_type: str, linked_id: int, name: str) -> Response:
        """An export CSV: text/csv with charset and Content-Length, as the client and CLI need (§9.1)."""
        path = self.path(EXPORTS, name)
        with self.store.tx() as db:
            row = db.execute(
                "SELECT 1 FROM media WHERE media_type = ? AND linked_id = ? AND file_name = ?",
                (media_type, linked_id, name),
            ).fetchone()
        if row is None or not path.is_file():
            raise ApiError(404, f"no {media_type} {name!r} for #{linked_id} (a newer export replaced it?)")
        data = path.read_bytes()
        return Response(data, content_type=CSV_TYPE, headers={"Content-Length": str(len(data))})

    def register(self, app: Flask) -> None:
        app.add_url_rule(f"/upload/{UPLOADS}/<name>", "upload", self.put_upload, methods=["PUT"])
        app.add_url_rule(f"/media/{UPLOADS}/<name>", "location", self.get_location, methods=["GET"])
        app.add_url_rule("/media/<media_type>/<int:linked_id>/<name>", "export_file", self.get_export, methods=["GET"])
