"""Subject manifests: what to upload, one row per subject, checked completely before anything is sent.

The format is the official ``panoptes`` CLI's (``panoptes subject-set upload-subjects``): a CSV whose
cells are local file names (relative to the manifest's folder) or http(s) URLs become the subject's
media, in column order, and every other column becomes metadata. Columns starting with ``#`` or ``!``
are hidden metadata (shown to nobody in the web UI, kept in exports) and keep their prefix. Unlike the
CLI, a key column (e.g. ``candidate_id``) must identify each subject uniquely: the uploader stores it in
the subject's metadata to skip what is already on Zooniverse when a run is repeated.

Media columns, when not named by the caller: a column (other than the key and hidden columns) is media
when at least one of its cells refers to media, i.e. is an http(s) URL, names an existing file under the
manifest's folder, or ends in a supported extension. Every cell of a media column must then be filled
and be a URL or an existing file with a supported type, so a missing or misspelt file is an error, not a
column silently demoted to metadata (which is what the CLI's "any file that exists" rule does).

Every local media file is checked by its content before anything is sent: not empty, at most
``MAX_MEDIA_BYTES``, and holding what its extension says (magic bytes; images parsed by Pillow), so volunteers
never get a broken subject. Its path must stay inside the manifest's folder unless the caller allows others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pandera.pandas as pa
from PIL import Image

from glitchrun.csvio import CsvError, read_csv, validate

#: the media types Zooniverse accepts for subjects, by file extension
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".txt": "text/plain",
    ".json": "application/json",
}
HIDDEN_PREFIXES = ("#", "!")
#: the largest media file accepted: the official panoptes CLI's limit (panoptes_cli/commands/subject_set.py,
#: MAX_UPLOAD_FILE_SIZE = 1024 * 1024; the server itself takes files by signed URL and checks no size)
MAX_MEDIA_BYTES = 1024 * 1024
#: how a file of each image type starts (an MP4's "ftyp" box is at byte 4, checked apart)
MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",), "image/gif": (b"GIF87a", b"GIF89a")}
#: Pillow's name of each image type
PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF"}

#: a local media file, or an external one as ``{mime type: url}``
Location = Path | dict[str, str]


def media_type(name: str) -> str | None:
    """The MIME type of a file name or URL, from its extension; None if Zooniverse does not take it."""
    path = urlparse(name).path if is_url(name) else name
    return MEDIA_TYPES.get(PurePosixPath(path).suffix.lower())


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def holds_its_type(path: Path, mime: str) -> bool:
    """Whether the file's bytes are what its MIME type says: magic bytes, then a parse of the whole file.

    PNGs are checked with Pillow's ``verify`` (every chunk read and its CRC checked, a truncated file fails,
    ~0.1 ms); JPEG and GIF are decoded, since ``verify`` does not look at their data.
    """
    data = path.read_bytes()
    try:
        if mime in MAGIC:
            if not data.startswith(MAGIC[mime]):
                return False
            with Image.open(path) as image:
                if image.format != PILLOW_FORMATS[mime]:
                    return False
                image.verify() if mime == "image/png" else image.load()
            return True
        if mime == "video/mp4":
            return data[4:8] == b"ftyp"
        if mime == "audio/mpeg":
            return data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
        text = data.decode("utf-8")
        if mime == "application/json":
            json.loads(text)
        elif mime == "image/svg+xml":
            return "<svg" in text
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; ``frame`` holds one row per subject, indexed by key, in manifest order."""

    frame: pd.DataFrame
    key_column: str
    base_dir: Path
    media_columns: list[str]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, key_column: str, base_dir: Path,
                   media_columns: list[str] | None = None, *, source: str = "manifest",
                   media_anywhere: bool = False) -> Manifest:
        """Validate a manifest frame (file names relative to ``base_dir``); raise ``CsvError`` if unusable.

        The key may also be the frame's index name. Errors name rows as CSV file lines (header = line 1, or
        the lines ``read_csv`` recorded). Key and media cells become strings; metadata keeps numbers as
        numbers, and missing values become None. Local media must lie under ``base_dir`` unless ``media_anywhere``.
        """
        base_dir = Path(base_dir)
        if key_column not in frame.columns and frame.index.name == key_column:
            frame = frame.reset_index()
        frame = frame.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        check_columns(frame, key_column, media_columns, source)
        if frame.empty:
            raise CsvError(f"{source}: no subjects (the manifest has a header but no rows)")
        if media_columns is None:
            media_columns = detect_media_columns(frame, key_column, base_dir)
        if not media_columns:
            raise CsvError(f"{source}: no column holds media files or URLs (looked under {base_dir}); "
                           "name them with media_columns")
        text_columns = [key_column, *media_columns]
        frame[text_columns] = frame[text_columns].map(lambda v: "" if pd.isna(v) else str(v).strip())
        validate(frame, manifest_schema(frame, key_column, media_columns, base_dir, media_anywhere), source=source)
        return cls(frame.set_index(key_column, drop=False), key_column, base_dir, list(media_columns))

    @property
    def keys(self) -> list[str]:
        return list(self.frame.index)

    def metadata(self, key: str) -> dict[str, Any]:
        """The subject's metadata: every column that is not media, the key column included."""
        row = self.frame.loc[key]
        return {column: plain(row[column]) for column in self.frame.columns if column not in self.media_columns}

    def locations(self, key: str) -> list[Location]:
        """The subject's media in column order: local files as paths, URLs as ``{mime type: url}``."""
        row = self.frame.loc[key]
        return [{media_type(row[c]): row[c]} if is_url(row[c]) else self.base_dir / row[c] for c in self.media_columns]


def read_manifest(path: str | os.PathLike[str], key_column: str, media_columns: list[str] | None = None, *,
                  media_anywhere: bool = False) -> Manifest:
    """Read and validate a manifest CSV; file names in it are relative to its folder (and stay inside it
    unless ``media_anywhere``)."""
    path = Path(path)
    # every cell as text (a key "007" stays "007"); blank lines kept: a blank row is refused, not skipped
    frame = read_csv(path, what="manifest", dtype=str, keep_default_na=False, skip_blank_lines=False)
    return Manifest.from_frame(frame, key_column, path.parent, media_columns, source=f"manifest {path}",
                               media_anywhere=media_anywhere)


def check_columns(frame: pd.DataFrame, key_column: str, media_columns: list[str] | None, source: str) -> None:
    """Errors in the header: named columns that are missing, and the CLI's index columns we do not support."""
    named = [key_column, *(media_columns or [])]
    missing = [c for c in named if c not in frame.columns]
    if missing:
        raise CsvError(f"{source}: no column {', '.join(map(repr, missing))} (columns: {list(frame.columns)})")
    if key_column in (media_columns or []):
        raise CsvError(f"{source}: the key column {key_column!r} cannot also be a media column")
    indexed = [c for c in frame.columns if c.startswith("%")]
    if indexed:
        raise CsvError(f"{source}: columns {indexed} start with '%' (indexed subject sets), which glitchrun "
                       "does not support; rename them")


def detect_media_columns(frame: pd.DataFrame, key_column: str, base_dir: Path) -> list[str]:
    """Columns with at least one cell that refers to media (see the module docstring)."""

    def refers_to_media(value: Any) -> bool:
        if not isinstance(value, str) or not value.strip():
            return False
        value = value.strip()
        return is_url(value) or media_type(value) is not None or (base_dir / value).is_file()

    candidates = [c for c in frame.columns if c != key_column and not c.startswith(HIDDEN_PREFIXES)]
    return [c for c in candidates if frame[c].map(refers_to_media).any()]


def manifest_schema(frame: pd.DataFrame, key_column: str, media_columns: list[str], base_dir: Path,
                    media_anywhere: bool = False) -> pa.DataFrameSchema:
    """The pandera schema of this manifest: key filled and unique, media present, inside the manifest's
    folder, of a supported type and usable by its content.

    A blank row fails once, as "row is not empty" on the key column, instead of once per column; each media
    check looks only at the cells that passed the checks before it, so a cell fails once, for its first fault.
    """
    blank = frame.map(lambda v: pd.isna(v) or v == "").all(axis=1)
    root = base_dir.resolve()

    def cells(name: str, ok: Callable[[str], bool]) -> pa.Check:
        return pa.Check(lambda s: s.map(ok) | blank.loc[s.index], name=name)

    def duplicated(s: pd.Series) -> pd.Series:
        return s.duplicated(keep=False) & s.ne("")

    def inside(v: str) -> bool:
        return media_anywhere or (base_dir / v).resolve().is_relative_to(root)

    def local(v: str) -> Path | None:
        """The file of a cell that passed the checks on its name, None for a URL or a cell failed earlier."""
        if not v or is_url(v) or not inside(v) or media_type(v) is None or not (base_dir / v).is_file():
            return None
        return base_dir / v

    key_checks = [
        pa.Check(lambda s: ~blank.loc[s.index], name="row is not empty"),
        cells("key is filled", bool),
        pa.Check(lambda s: ~duplicated(s), name="key is unique"),
    ]
    size = f"{MAX_MEDIA_BYTES // 1024 ** 2} MiB"
    media_checks = [
        cells("media is filled", bool),
        cells("media path stays inside the manifest's folder (or is an http(s) URL)",
              lambda v: not v or is_url(v) or inside(v)),
        cells(f"media type is one of {', '.join(sorted(MEDIA_TYPES))}", lambda v: not v or media_type(v) is not None),
        cells("media file exists (or is an http(s) URL)",
              lambda v: not v or is_url(v) or not inside(v) or media_type(v) is None or (base_dir / v).is_file()),
        cells("media file is not empty", lambda v: (p := local(v)) is None or p.stat().st_size > 0),
        cells(f"media file is at most {size}, Zooniverse's limit",
              lambda v: (p := local(v)) is None or p.stat().st_size <= MAX_MEDIA_BYTES),
        cells("media file holds what its extension says",
              lambda v: (p := local(v)) is None or not 0 < p.stat().st_size <= MAX_MEDIA_BYTES
              or holds_its_type(p, media_type(v))),
    ]
    columns = {key_column: pa.Column(checks=key_checks)} | {c: pa.Column(checks=media_checks) for c in media_columns}
    return pa.DataFrameSchema(columns)


def plain(value: Any) -> Any:
    """A metadata cell as a JSON-ready Python value: numpy scalars unwrapped, NaN/NA as None."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value
