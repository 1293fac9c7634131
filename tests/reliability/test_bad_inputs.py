"""Every CSV glitchrun reads, fed to the job that reads it with the defects real files have: a clear error
naming the file, the line and the column, and the embedded Panoptes left exactly as it was.

The corpus (``bad_inputs/<kind>__<defect>.csv``) holds each kind's good file and its kind-specific
defects, and manifests of broken media (``bad_inputs/media/``: empty, not an image, truncated, another type
than its extension, a type Zooniverse does not take, a path leaving the manifest's folder). Encodings,
delimiters, an empty file, ragged rows, a header without rows, the spreadsheet variants (CRLF, BOM, a trailing
empty column, a trailing comma on the data rows only, quoted cells spanning lines) and a 20,000-row file are
made from the good file here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from glitchrun.csvio import CsvError
from glitchrun.data.loaders import CsvData, GravitySpyData
from glitchrun.jobs.update_metadata import UpdateMetadata
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.exports import read_classification_export, read_subject_export
from glitchrun.zooniverse.manifest import read_manifest

from .conftest import RunJob, SeedCampaign
from .helpers import fingerprint, write_manifest

#: ``refuse(kind, path)``: the error message of the kind's job on the file
Refuse = Callable[[str, Path], str]
CORPUS = Path(__file__).parent / "bad_inputs"
#: rows of the large file (its speed is the benchmarks' business, not a timed test's)
LARGE_ROWS = 20_000


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
    "manifest__media_empty.csv": ["column 'image_1' fails media file is not empty at line 3", "'media/empty.png'"],
    "manifest__media_not_an_image.csv": ["column 'image_1' fails media file holds what its extension says at line 3",
                                         "'media/text.png'"],
    "manifest__media_truncated.csv": ["column 'image_1' fails media file holds what its extension says at line 3",
                                      "'media/truncated.png'"],
    "manifest__media_content_not_type.csv": ["column 'image_1' fails media file holds what its extension says",
                                             "at line 3", "'media/png_named.jpg'"],
    "manifest__media_bad_json.csv": ["column 'image_1' fails media file holds what its extension says at line 3"],
    "manifest__media_bad_svg.csv": ["column 'image_1' fails media file holds what its extension says at line 3"],
    "manifest__media_type_not_allowed.csv": ["column 'image_1' fails media type is one of", "at line 3",
                                             "'media/scan.tiff'"],
    "manifest__media_outside_folder.csv": ["column 'image_1' fails media path stays inside the manifest's folder",
                                           "at line 3", "'../../../docs/images/example_qscan.png'"],
}
#: per kind, a free-text or JSON column whose first cell can span two lines without changing what it means
MULTILINE_COLUMN = {"manifest": "note", "metadata": "note", "features": "comment", "gravityspy_o3": "comment",
                    "gravityspy_v1": "comment", "classification_export": "metadata", "subject_export": "metadata"}
#: per kind, a defect file whose failures are after its first row (their lines move when that row spans two)
LATER_DEFECT = {"manifest": "manifest__missing_file.csv", "metadata": "metadata__wrong_type.csv",
                "features": "features__wrong_type.csv", "gravityspy_o3": "gravityspy_o3__wrong_type.csv",
                "gravityspy_v1": "gravityspy_v1__wrong_type.csv",
                "classification_export": "classification_export__wrong_type.csv",
                "subject_export": "subject_export__wrong_type.csv"}
#: kinds a header without rows is fine for: an export made before anything was classified
MAY_BE_EMPTY = {"classification_export", "subject_export"}


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


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def csv_text(rows: list[list[str]], line_end: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows(rows)
    return out.getvalue()


def spanning_two_lines(text: str, column: str) -> str:
    """The file with the first row's cell of ``column`` over two lines (a JSON cell broken after a comma)."""
    rows = rows_of(text)
    at = rows[0].index(column)
    cell = rows[1][at]
    rows[1][at] = cell.replace(",", ",\n", 1) if cell.startswith("{") else cell + "\nsecond line"
    return csv_text(rows)


#: spreadsheet variants of the good file, read as the good file is
SPREADSHEET: dict[str, Callable[[str], bytes]] = {
    "byte order mark": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "CRLF line ends": lambda text: csv_text(rows_of(text), "\r\n").encode(),
    "trailing empty column": lambda text: csv_text([r + [""] for r in rows_of(text)]).encode(),
    "trailing comma on data rows only": lambda text: csv_text([r + [""] * (i > 0) for i, r in enumerate(rows_of(text))]
                                                              ).encode(),
    "all of them": lambda text: b"\xef\xbb\xbf" + csv_text([r + [""] for r in rows_of(text)], "\r\n").encode(),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("variant", sorted(SPREADSHEET))
def test_spreadsheet_variants_are_read_as_the_good_file(tmp_path: Path, kind: str, variant: str) -> None:
    good = CORPUS / f"{kind}__good.csv"
    saved = tmp_path / good.name
    saved.write_bytes(SPREADSHEET[variant](good.read_text(encoding="utf-8")))
    pd.testing.assert_frame_equal(KINDS[kind].read(saved), KINDS[kind].read(good))


#: ragged files made from the good one: (the transformed text, what the error must say)
RAGGED: dict[str, tuple[Callable[[list[list[str]]], list[list[str]]], str]] = {
    "a row with an extra cell": (lambda rows: rows[:2] + [rows[2] + ["extra"]] + rows[3:],
                                 "line 3 has more cells than the header's"),
    "a row missing its last cell": (lambda rows: rows[:3] + [rows[3][:-1]] + rows[4:],
                                    "line 4 has fewer cells than the header's"),
    "a trailing column with one value": (lambda rows: [r + [""] for r in rows[:3]] + [rows[3] + ["x"]] + rows[4:],
                                         "has no name in the header but holds values at line 4"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("defect", sorted(RAGGED))
def test_a_row_with_more_or_fewer_cells_than_the_header_is_refused_at_its_line(refuse: Refuse, tmp_path: Path,
                                                                               kind: str, defect: str) -> None:
    """Before, pandas made the extra cells the row index and blamed other columns at lines that do not exist."""
    make, expected = RAGGED[defect]
    path = tmp_path / f"{kind}.csv"
    path.write_text(csv_text(make(rows_of((CORPUS / f"{kind}__good.csv").read_text(encoding="utf-8")))))
    message = refuse(kind, path)
    assert str(path) in message and expected in message, message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_header_without_rows_is_refused_where_rows_are_needed(refuse: Refuse, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text((CORPUS / f"{kind}__good.csv").read_text(encoding="utf-8").splitlines()[0] + "\n")
    if kind in MAY_BE_EMPTY:
        assert KINDS[kind].read(path).empty
    else:
        message = refuse(kind, path)
        assert f"{path}: the file has a header but no rows" in message, message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_lines_are_counted_as_an_editor_shows_them_after_a_cell_spanning_two(refuse: Refuse, tmp_path: Path,
                                                                             kind: str) -> None:
    """The defect file with its first row's cell over two lines: every later line number is one more."""
    name = LATER_DEFECT[kind]
    path = tmp_path / name
    path.write_text(spanning_two_lines((CORPUS / name).read_text(encoding="utf-8"), MULTILINE_COLUMN[kind]))
    message = refuse(kind, path)
    for expected in DEFECTS[name]:
        moved = re.sub(r"line (\d+)", lambda m: f"line {int(m[1]) + 1}", expected)
        assert moved in message, f"{moved!r} is not in the error: {message}"


def test_a_media_file_over_zooniverse_s_size_limit_is_refused(refuse: Refuse, tmp_path: Path) -> None:
    """1 MiB, the official panoptes CLI's limit: a noise PNG of 1.1 MB (it does not compress)."""
    path = write_manifest(tmp_path / "upload", 2)
    big = tmp_path / "upload" / "g0001_1.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (610, 610, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 1024 * 1024
    message = refuse("manifest", path)
    assert "column 'image_1' fails media file is at most 1 MiB, Zooniverse's limit at line 3" in message, message


def test_media_outside_the_folder_are_taken_when_the_option_says_so(tmp_path: Path) -> None:
    name = "manifest__media_outside_folder.csv"
    with pytest.raises(CsvError):
        read_manifest(CORPUS / name, "candidate_id")
    manifest = read_manifest(CORPUS / name, "candidate_id", media_anywhere=True)
    assert manifest.locations("g2")[1].resolve() == (CORPUS.parents[2] / "docs/images/example_qscan.png").resolve()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_large_file_is_refused_at_its_last_line(refuse: Refuse, tmp_path: Path, kind: str) -> None:
    """20,000 rows made from the good file's first row, the last one without its key."""
    key = KINDS[kind].key
    first = pd.read_csv(CORPUS / f"{kind}__good.csv", dtype=str, keep_default_na=False).iloc[[0]]
    rows = first.loc[first.index.repeat(LARGE_ROWS)].reset_index(drop=True)
    rows[key] = [str(1000 + i) for i in range(LARGE_ROWS - 1)] + [""]  # digits: ids for exports, keys for others
    path = tmp_path / f"{kind}_large.csv"
    rows.to_csv(path, index=False)
    message = refuse(kind, path)
    assert str(path) in message and f"'{key}'" in message and f"line {LARGE_ROWS + 1}" in message, message
