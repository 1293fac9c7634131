"""Manifests: the CLI's format read, media found, and every kind of bad row named by its file line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from glitchrun.csvio import CsvError
from glitchrun.zooniverse.manifest import Manifest, read_manifest


def write(folder: Path, text: str, files: tuple[str, ...] = ("a.png", "b.png", "c.jpg", "d.tif")) -> Path:
    for i, name in enumerate(files):
        Image.new("RGB", (4, 4), (i * 60, 0, 0)).save(folder / name, format="TIFF" if name.endswith(".tif") else None)
    path = folder / "manifest.csv"
    path.write_text(text)
    return path


def test_media_metadata_and_hidden_columns(tmp_path: Path):
    path = write(tmp_path, "candidate_id,image_1,image_2,url,ifo,#truth,!note\n"
                           "007,a.png,b.png,https://example.org/x.jpg?v=1,H1,Blip,n1\n"
                           "008,c.jpg,a.png,http://example.org/y.png,L1,,\n")
    manifest = read_manifest(path, "candidate_id")
    assert manifest.keys == ["007", "008"]  # keys stay text
    assert manifest.media_columns == ["image_1", "image_2", "url"]
    assert manifest.locations("007") == [tmp_path / "a.png", tmp_path / "b.png",
                                         {"image/jpeg": "https://example.org/x.jpg?v=1"}]
    assert manifest.metadata("007") == {"candidate_id": "007", "ifo": "H1", "#truth": "Blip", "!note": "n1"}
    assert manifest.metadata("008")["#truth"] == ""


def test_named_media_columns_leave_the_others_as_metadata(tmp_path: Path):
    path = write(tmp_path, "candidate_id,image,thumb\nx,a.png,b.png\n")
    manifest = read_manifest(path, "candidate_id", media_columns=["image"])
    assert manifest.media_columns == ["image"]
    assert manifest.metadata("x") == {"candidate_id": "x", "thumb": "b.png"}


def test_frame_with_key_index_and_numbers(tmp_path: Path):
    write(tmp_path, "")
    frame = pd.DataFrame({"id": ["g1", "g2"], "image": ["a.png", "b.png"], "snr": [12.5, float("nan")],
                          "#round": [1, 1]}).set_index("id")
    manifest = Manifest.from_frame(frame, "id", tmp_path)
    assert manifest.metadata("g1") == {"id": "g1", "snr": 12.5, "#round": 1}
    assert type(manifest.metadata("g1")["#round"]) is int
    assert manifest.metadata("g2")["snr"] is None


@pytest.mark.parametrize("rows,expected", [
    ("x,a.png\nx,b.png\n", ["'candidate_id' fails key is unique at line 2, line 3"]),
    ("x,a.png\n\ny,b.png\n", ["'candidate_id' fails row is not empty at line 3"]),
    ("x,a.png\n,\ny,b.png\n", ["'candidate_id' fails row is not empty at line 3"]),
    ("x,a.png\n,b.png\n", ["'candidate_id' fails key is filled at line 3"]),
    ("x,a.png\ny,missing.png\n", ["'image' fails media file exists (or is an http(s) URL) at line 3"]),
    ("x,d.tif\ny,a.png\n", ["'image' fails media type is one of", "at line 2 (values: 'd.tif')"]),
    ("x,a.png\ny,https://example.org/page\n", ["'image' fails media type is one of", "at line 3"]),
    ("x,a.png\ny,\n", ["'image' fails media is filled at line 3"]),
])
def test_bad_rows_are_named_by_line(tmp_path: Path, rows: str, expected: list[str]):
    path = write(tmp_path, "candidate_id,image\n" + rows)
    with pytest.raises(CsvError) as err:
        read_manifest(path, "candidate_id")
    assert str(path) in str(err.value)
    for text in expected:
        assert text in str(err.value)


def test_all_problems_in_one_error(tmp_path: Path):
    path = write(tmp_path, "candidate_id,image,ifo\nx,a.png,H1\nx,nope.png,H1\n,,\ny,d.tif,L1\n")
    with pytest.raises(CsvError) as err:
        read_manifest(path, "candidate_id")
    message = str(err.value)
    assert "key is unique at line 2, line 3" in message
    assert "media file exists (or is an http(s) URL) at line 3" in message
    assert "row is not empty at line 4" in message
    assert "media type is one of" in message and "line 5" in message


@pytest.mark.parametrize("text,key,media,expected", [
    ("id,image\nx,a.png\n", "candidate_id", None, "no column 'candidate_id'"),
    ("candidate_id,image\nx,a.png\n", "candidate_id", ["img"], "no column 'img'"),
    ("candidate_id,ifo\nx,H1\n", "candidate_id", None, "no column holds media"),
    ("candidate_id,%ifo,image\nx,H1,a.png\n", "candidate_id", None, "'%' (indexed subject sets)"),
    ("candidate_id,image\nx,a.png\n", "candidate_id", ["candidate_id"], "cannot also be a media column"),
])
def test_bad_columns(tmp_path: Path, text: str, key: str, media: list[str] | None, expected: str):
    with pytest.raises(CsvError) as err:
        read_manifest(write(tmp_path, text), key, media)
    assert expected in str(err.value)


def test_an_empty_manifest_is_an_error(tmp_path: Path):
    with pytest.raises(CsvError, match="has a header but no rows"):
        read_manifest(write(tmp_path, "candidate_id,image\n"), "candidate_id", ["image"])
