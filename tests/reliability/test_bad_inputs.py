"""Every CSV glitchrun reads, fed to the job that reads it with the defects real files have: a clear error
naming the file, the line and the column, and the embedded Panoptes left exactly as it was.

The corpus (``bad_inputs/<kind>__<defect>.csv``) holds each kind's good file and its kind-specific
defects; encodings, delimiters, an empty file and a 200,000-row file are made from the good file here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from glitchrun.data.loaders import CsvData, GravitySpyData
from glitchrun.jobs.update_metadata import UpdateMetadata
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.exports import read_classification_export, read_subject_export
from glitchrun.zooniverse.manifest import read_manifest

from .conftest import RunJob, SeedCampaign
from .helpers import fingerprint

#: ``refuse(kind, path)``: the error message of the kind's job on the file
Refuse = Callable[[str, Path], str]
CORPUS = Path(__file__).parent / "bad_inputs"
#: rows of the large file, and the seconds the job may take to refuse it
LARGE_ROWS = 200_000
LARGE_SECONDS = 60


@dataclass(frozen=True)
class Kind:
    """A kind of CSV: how a job is given one, how it is read, which column identifies a row."""

    key: str
    read: Callable[[Path], Any]
    #: the job and its overrides ({path} is the file); None when no job reads this kind from a file
    job: tuple[str, ...] | None
    #: the job looks the keys up on the server (the server is seeded first)
    seeded: bool = False


def read_metadata_csv(path: Path) -> pd.DataFrame:
    return UpdateMetadata(None, path.parent, csv=path, subject_set_name="batch-1", key_column="candidate_id").read()


KINDS = {
    "manifest": Kind("candidate_id", lambda p: read_manifest(p, "candidate_id").frame,
                     ("init_project", "job.manifest={path}")),
    "metadata": Kind("candidate_id", read_metadata_csv,
                     ("update_metadata", "job.csv={path}", "job.key_column=candidate_id",
                      "job.subject_set_name=batch-1", "job.dry_run=false"), seeded=True),
    "classification_export": Kind("classification_id", read_classification_export, ("ingest", "job.export={path}")),
    "subject_export": Kind("subject_id", read_subject_export, None),
    "gravityspy_o3": Kind("id", lambda p: GravitySpyData(p).load().frame,
                          ("al_round", "data=gravityspy", "data.path={path}")),
    "gravityspy_v1": Kind("gravityspy_id", lambda p: GravitySpyData(p).load().frame,
                          ("al_round", "data=gravityspy", "data.path={path}")),
    "features": Kind("id", lambda p: CsvData(p, feature_columns=["f1", "f2"], label_column="label").load().frame,
                     ("al_round", "data=csv", "data.path={path}", "data.feature_columns=[f1,f2]",
                      "data.label_column=label")),
}

#: file -> what the error must say besides the file's path
DEFECTS = {
    "manifest__missing_column.csv": ["no column 'candidate_id'"],
    "manifest__duplicate_key.csv": ["column 'candidate_id' fails key is unique at line 2, line 4"],
    "manifest__empty_key.csv": ["column 'candidate_id' fails key is filled at line 3"],
    "manifest__wrong_media_type.csv": ["column 'image_1' fails media type", "at line 3", "g2_1.tiff"],
    "manifest__missing_file.csv": ["column 'image_1' fails media file exists", "at line 3", "no_such_image.png"],
    "metadata__missing_column.csv": ["missing column 'candidate_id'"],
    "metadata__duplicate_key.csv": ["column 'candidate_id'", "line 2, line 4"],
    "metadata__nan.csv": ["column 'snr' fails is not an integer", "at line 3", "'nan'"],
    "metadata__wrong_type.csv": ["column 'snr' fails is not an integer", "at line 4", "'loud'"],
    "metadata__unknown_id.csv": ["column 'candidate_id' fails is not a subject of subject set", "at line 3", "'c99'"],
    "classification_export__missing_column.csv": ["missing column 'annotations'"],
    "classification_export__duplicate_key.csv": ["column 'classification_id'", "line 2, line 4"],
    "classification_export__nan.csv": ["column 'workflow_id' fails not_nullable at line 3"],
    "classification_export__wrong_type.csv": ["column 'created_at'", "at line 4", "'yesterday'"],
    "classification_export__bad_json.csv": ["column 'annotations' fails is not a JSON array at line 3"],
    "classification_export__unknown_answer.csv": ["line 3", "annotations", "'Whistel'"],
    "subject_export__missing_column.csv": ["missing column 'classifications_count'"],
    "subject_export__nan.csv": ["column 'classifications_count' fails not_nullable at line 3"],
    "subject_export__wrong_type.csv": ["column 'classifications_count'", "at line 4", "'many'"],
    "subject_export__bad_reason.csv": ["column 'retirement_reason' fails is not a retirement reason at line 3"],
    "gravityspy_o3__missing_column.csv": ["missing column 'snr'"],
    "gravityspy_o3__duplicate_key.csv": ["column 'id'", "line 2, line 4"],
    "gravityspy_o3__nan.csv": ["column 'snr' fails not_nullable at line 3"],
    "gravityspy_o3__wrong_type.csv": ["column 'snr'", "at line 4", "'loud'"],
    "gravityspy_o3__unknown_label.csv": ["column 'label'", "at line 3", "'Wistle'"],
    "gravityspy_o3__unknown_ifo.csv": ["column 'ifo'", "at line 4", "'X1'"],
    "gravityspy_v1__missing_column.csv": ["missing column 'peak_time'"],
    "gravityspy_v1__duplicate_key.csv": ["column 'gravityspy_id'", "line 2, line 3"],
    "gravityspy_v1__nan.csv": ["column 'peak_frequency' fails not_nullable at line 4"],
    "gravityspy_v1__wrong_type.csv": ["column 'peak_time_ns'", "at line 3", "'0.5s'"],
    "gravityspy_v1__unknown_label.csv": ["column 'label'", "at line 4", "'Scatered_Light'"],
    "features__missing_column.csv": ["missing column 'id'"],
    "features__duplicate_key.csv": ["column 'id'", "line 2, line 4"],
    "features__nan.csv": ["column 'f2' fails not_nullable at line 3"],
    "features__wrong_type.csv": ["column 'f2'", "at line 4", "'three'"],
    "features__unknown_label.csv": ["column 'label'", "at line 4", "'whistle'"],
}


def latin1(text: str) -> bytes:
    return text.encode("latin-1")


def first_non_ascii_line(text: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if not line.isascii())


#: name -> (the good file's text made into bytes, what the error must say)
TRANSFORMS: dict[str, tuple[Callable[[str], bytes], Callable[[str], list[str]]]] = {
    "latin-1": (latin1, lambda text: [f"line {first_non_ascii_line(text)} is not UTF-8", "save the file as UTF-8"]),
    "semicolons": (lambda text: text.replace(",", ";").encode(), lambda text: ["separated by semicolons"]),
    "tabs": (lambda text: text.replace(",", "\t").encode(), lambda text: ["separated by tabs"]),
    "empty": (lambda text: b"", lambda text: ["the file is empty"]),
}


@pytest.fixture
def refuse(run_job: RunJob, seed_campaign: SeedCampaign, local_backend: LocalBackend) -> Refuse:
    """``refuse(kind, path)``: the kind's job (or reader) fails on the file; its message, once the server
    is checked unchanged (or, for jobs that need no server, never started)."""

    def refuse_(kind_name: str, path: Path) -> str:
        kind = KINDS[kind_name]
        if kind.seeded:
            seed_campaign([{"candidate_id": f"c{i}", "snr": i, "note": "seeded"} for i in (1, 2, 3)])
        before = fingerprint(local_backend.storage_dir)
        with pytest.raises(Exception) as failure:
            if kind.job is None:
                kind.read(path)
            else:
                job, *overrides = kind.job
                run_job(job, *[o.format(path=path) for o in overrides])
        assert fingerprint(local_backend.storage_dir) == before
        if not kind.seeded:
            assert not local_backend.storage_dir.exists(), "the job started the embedded Panoptes"
        return str(failure.value)

    return refuse_


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_a_defect_is_named_by_file_line_and_column(refuse: Refuse, name: str) -> None:
    path = CORPUS / name
    message = refuse(name.split("__")[0], path)
    for expected in [str(path), *DEFECTS[name]]:
        assert expected in message, f"{expected!r} is not in the error: {message}"
    assert "TypeError" not in message, f"a check's own failure leaked into the error: {message}"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_other_encodings_delimiters_and_empty_files_are_refused(refuse: Refuse, tmp_path: Path, kind: str,
                                                                transform: str) -> None:
    text = (CORPUS / f"{kind}__good.csv").read_text(encoding="utf-8")
    make, expected = TRANSFORMS[transform]
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(make(text))
    message = refuse(kind, path)
    for fragment in [str(path), *expected(text)]:
        assert fragment in message, f"{fragment!r} is not in the error: {message}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_byte_order_mark_is_accepted(tmp_path: Path, kind: str) -> None:
    good = CORPUS / f"{kind}__good.csv"
    marked = tmp_path / good.name
    marked.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    pd.testing.assert_frame_equal(KINDS[kind].read(marked), KINDS[kind].read(good))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_large_file_is_refused_quickly_at_its_last_line(refuse: Refuse, tmp_path: Path, kind: str) -> None:
    """200,000 rows made from the good file's first row, the last one without its key."""
    key = KINDS[kind].key
    first = pd.read_csv(CORPUS / f"{kind}__good.csv", dtype=str, keep_default_na=False).iloc[[0]]
    rows = first.loc[first.index.repeat(LARGE_ROWS)].reset_index(drop=True)
    rows[key] = [str(1000 + i) for i in range(LARGE_ROWS - 1)] + [""]  # digits: ids for exports, keys for others
    path = tmp_path / f"{kind}_large.csv"
    rows.to_csv(path, index=False)
    started = time.monotonic()
    message = refuse(kind, path)
    assert time.monotonic() - started < LARGE_SECONDS
    assert str(path) in message and f"'{key}'" in message and f"line {LARGE_ROWS + 1}" in message, message
