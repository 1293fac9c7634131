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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pandera.pandas as pa

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

#: a local media file, or an external one as ``{mime type: url}``
Location = Path | dict[str, str]


def media_type(name: str) -> str | None:
    """The MIME type of a file name or URL, from its extension; None if Zooniverse does not take it."""
    path = urlparse(name).path if is_url(name) else name
    return MEDIA_TYPES.get(PurePosixPath(path).suffix.lower())


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; ``frame`` holds one row per subject, indexed by key, in manifest order."""

    frame: pd.DataFrame
    key_column: str
    base_dir: Path
    media_columns: list[str]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, key_column: str, base_dir: Path,
                   media_columns: list[str] | None = None, *, source: str = "manifest") -> Manifest:
        """Validate a manifest frame (file names relative to ``base_dir``); raise ``CsvError`` if unusable.

        The key may also be the frame's index name. Errors name rows as CSV file lines (header = line 1).
        Key and media cells become strings; metadata keeps numbers as numbers, and missing values become None.
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
        validate(frame, manifest_schema(frame, key_column, media_columns, base_dir), source=source)
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


def read_manifest(path: str | os.PathLike[str], key_column: str, media_columns: list[str] | None = None) -> Manifest:
    """Read and validate a manifest CSV; file names in it are relative to its folder."""
    path = Path(path)
    # every cell as text (a key "007" stays "007"); blank lines kept so that errors name the right lines
    frame = read_csv(path, what="manifest", dtype=str, keep_default_na=False, skip_blank_lines=False)
    return Manifest.from_frame(frame, key_column, path.parent, media_columns, source=f"manifest {path}")


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


def manifest_schema(frame: pd.DataFrame, key_column: str, media_columns: list[str], base_dir: Path) -> pa.DataFrameSchema:
    """The pandera schema of this manifest: key filled and unique, media present and of a supported type.

    A blank row fails once, as "row is not empty" on the key column, instead of once per column.
    """
    blank = frame.map(lambda v: pd.isna(v) or v == "").all(axis=1)

    def cells(name: str, ok: Callable[[str], bool]) -> pa.Check:
        return pa.Check(lambda s: s.map(ok) | blank.loc[s.index], name=name)

    def duplicated(s: pd.Series) -> pd.Series:
        return s.duplicated(keep=False) & s.ne("")

    key_checks = [
        pa.Check(lambda s: ~blank.loc[s.index], name="row is not empty"),
        cells("key is filled", bool),
        pa.Check(lambda s: ~duplicated(s), name="key is unique"),
    ]
    media_checks = [
        cells("media is filled", bool),
        cells("media file exists (or is an http(s) URL)", lambda v: not v or is_url(v) or (base_dir / v).is_file()),
        cells(f"media type is one of {', '.join(sorted(MEDIA_TYPES))}", lambda v: not v or media_type(v) is not None),
    ]
    columns = {key_column: pa.Column(checks=key_checks)} | {c: pa.Column(checks=media_checks) for c in media_columns}
    return pa.DataFrameSchema(columns)


def plain(value: Any) -> Any:
    """A metadata cell as a JSON-ready Python value: numpy scalars unwrapped, NaN/NA as None."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value
