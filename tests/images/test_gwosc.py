"""Real strain from GWOSC through gwosc's discovery and gwpy's reader, against a local GWOSC stand-in serving
GWOSC-format HDF5 files built from the shared real O3 strain examples."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy.signal import resample_poly

from glitchrun.images.gwosc_standin import GwoscStandIn
from glitchrun.images.qscan import MissingStrainError, QScanImages
from glitchrun.console import user_message
from glitchrun.images.strain import GwoscStrain, NpzStrain, StrainUnreachable

#: file A (H1) holds examples 0 (a Blip) and 4 (a Tomte) back to back; file B (L1) example 27 (a Whistle);
#: file C (H1, 16 kHz) example 6 (a Light_Modulation), upsampled; every example is 14 s, its glitch at 7 s
A_START, B_START, C_START = 1238200000, 1238300000, 1238400000
PAD = 7.0  # the files hold 7 s each side of each glitch


@pytest.fixture(scope="module")
def npz(shared_data: Path) -> NpzStrain:
    return NpzStrain(shared_data / "o3_glitch_strain_examples.npz")


@pytest.fixture
def standin(npz: NpzStrain, tmp_path: Path):
    seg = {i: npz.segment(f"o3strain-{i}", {}).data for i in (0, 4, 6, 27)}
    server = GwoscStandIn(tmp_path / "gwosc")
    server.add("H1", A_START, np.concatenate([seg[0], seg[4]]), 4096)
    server.add("L1", B_START, seg[27], 4096)
    # above the examples' 2048 Hz Nyquist, upsampled data holds nothing: add white noise at the level of
    # the real noise floor there, so whitening sees detector-like noise across the 16 kHz band
    upsampled = resample_poly(seg[6], 4, 1)
    noise = np.random.default_rng(0).standard_normal(upsampled.size) * np.std(np.diff(seg[6])) / 4
    server.add("H1", C_START, upsampled + noise, 16384)
    with server:
        yield server


def candidates(**times: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"ifo": [ifo for ifo, _ in times.values()], "event_time": [t for _, t in times.values()]},
                        index=pd.Index(list(times), name="id"))


def gwosc(standin: GwoscStandIn, cache: Path, **kwargs) -> GwoscStrain:
    return GwoscStrain(host=standin.host, cache_dir=str(cache), pad=PAD, progress=False, **kwargs)


def images(strain: GwoscStrain, **kwargs) -> QScanImages:
    return QScanImages(strain=strain, durations=[1.0], size=(320, 240), n_jobs=1, progress=False, **kwargs)


BATCH = candidates(blip=("H1", A_START + 7), tomte=("H1", A_START + 21), whistle=("L1", B_START + 7))


def test_real_candidates_render_from_gwosc_strain_each_file_downloaded_once(standin, npz, tmp_path: Path):
    rendered = images(gwosc(standin, tmp_path / "cache")).render(BATCH, tmp_path / "out")

    a, b = (f.path.name for f in standin.files[:2])
    assert standin.downloads == {a: 1, b: 1}  # the Blip and the Tomte share file A: one download
    assert list(rendered["strain_source"]) == ["gwosc"] * 3
    assert list(rendered["strain_file"]) == [a, a, b]
    assert list(rendered["sample_rate"]) == [4096.0] * 3
    for name in rendered["image_1s"]:
        assert imread(tmp_path / "out" / name).shape[:2] == (240, 320)
    # the images show the real glitches: the same Q planes as the examples' own arrays
    reference = QScanImages(strain=npz, durations=[1.0])
    strain = gwosc(standin, tmp_path / "cache")
    for cid, example, tolerance in (("blip", 0, 0.01), ("tomte", 4, 0.01), ("whistle", 27, 0.35)):
        plane = images(strain).transform(cid, BATCH.loc[cid].to_dict())
        expected = reference.transform(f"o3strain-{example}", {})
        assert plane.q == expected.q and plane.peak_energy == pytest.approx(expected.peak_energy, rel=1e-6)
        assert abs(plane.peak_time) < tolerance  # a Whistle lasts longer than its catalogue time marks


def test_a_warm_cache_downloads_nothing(standin, tmp_path: Path):
    images(gwosc(standin, tmp_path / "cache")).render(BATCH, tmp_path / "first")
    sent = standin.bytes_sent
    again = images(gwosc(standin, tmp_path / "cache")).render(BATCH, tmp_path / "second")
    assert standin.bytes_sent == sent and sum(standin.downloads.values()) == 2
    assert list(again["strain_source"]) == ["gwosc"] * 3


def resumed_from(requested: str) -> int:
    """The first byte an HTTP ``Range: bytes=N-`` header asks for."""
    assert requested.startswith("bytes=") and requested.endswith("-"), requested
    return int(requested[6:-1])


def test_a_transfer_cut_half_way_is_resumed_not_rendered_from(standin, tmp_path: Path):
    standin.cut_next(1)
    batch = BATCH.loc[["whistle"]]
    rendered = images(gwosc(standin, tmp_path / "cache")).render(batch, tmp_path / "out")
    served = standin.files[1]
    assert standin.downloads[served.path.name] == 2
    first, resumed = standin.ranges
    assert first == "" and 0 < resumed_from(resumed) <= served.path.stat().st_size // 2  # from where it broke
    cached = tmp_path / "cache" / standin.host.split("//")[1].replace(":", "_") / served.path.name
    assert cached.read_bytes() == served.path.read_bytes()
    assert rendered.loc["whistle", "strain_source"] == "gwosc"


def test_a_file_that_never_arrives_whole_is_never_used(standin, tmp_path: Path):
    standin.cut_next(2)
    out = tmp_path / "out"
    with pytest.raises(MissingStrainError, match=r"1 of 1 candidates \('whistle'\)"):
        images(gwosc(standin, tmp_path / "cache", retries=1)).render(BATCH.loc[["whistle"]], out)
    assert not out.exists()
    host_dir = next((tmp_path / "cache").iterdir())
    assert [p.name for p in host_dir.iterdir()] == [standin.files[1].path.name + ".part"]
    # the next batch resumes the part left behind and renders from the whole file
    rendered = images(gwosc(standin, tmp_path / "cache")).render(BATCH.loc[["whistle"]], out)
    assert 0 < resumed_from(standin.ranges[-1]) < standin.files[1].path.stat().st_size
    assert rendered.loc["whistle", "strain_source"] == "gwosc"


def test_16khz_strain_reaches_gravity_spys_2048_hz(standin, npz, tmp_path: Path):
    strain = gwosc(standin, tmp_path / "cache", sample_rate=16384)
    batch = candidates(lm=("H1", C_START + 7))
    rendered = images(strain).render(batch, tmp_path / "out")
    assert rendered.loc["lm", "sample_rate"] == 16384.0
    plane = images(strain).transform("lm", batch.loc["lm"].to_dict())
    assert plane.frange == (10.0, 2048.0)
    assert abs(plane.peak_time) < 0.05
    # the 4 kHz data of the same glitch stop where gwpy caps them: Nyquist / (1 + √11/Q) of the lowest plane (Q 4√2)
    top = QScanImages(strain=npz, durations=[1.0]).transform("o3strain-6", {}).frange[1]
    assert top == pytest.approx(2048 / (1 + math.sqrt(11) / (4 * math.sqrt(2))))


def test_real_candidates_without_strain_stop_before_any_image(standin, tmp_path: Path):
    batch = pd.concat([BATCH, candidates(gap=("H1", A_START + 5000), nowhere=("L1", 1000000000))])
    with pytest.raises(MissingStrainError) as caught:
        images(gwosc(standin, tmp_path / "cache")).render(batch, tmp_path / "out")
    message = str(caught.value)
    assert "2 of 5 candidates ('gap', 'nowhere')" in message
    assert "images/strain=gwosc" in message and "images.allow_synthetic=true" in message
    assert not (tmp_path / "out").exists()
    # allowed explicitly (a demo), those two get synthetic strain, and their subjects say so
    rendered = images(gwosc(standin, tmp_path / "cache"), allow_synthetic=True).render(batch, tmp_path / "out")
    assert list(rendered["strain_source"]) == ["gwosc"] * 3 + ["synthetic"] * 2
    assert list(rendered["strain_file"].iloc[3:]) == ["", ""]


def test_candidates_gwosc_has_no_data_for_are_one_warning(standin, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    batch = pd.concat([BATCH, candidates(gap=("H1", A_START + 5000), nowhere=("L1", 1000000000))])
    caplog.set_level(logging.WARNING, logger="glitchrun")
    gwosc(standin, tmp_path / "cache").fetch(batch)
    said = [r.getMessage() for r in caplog.records if r.name == "glitchrun.images.strain"]
    assert len(said) == 1 and said[0].startswith("GWOSC holds no strain for 2 of 5 candidates ('gap' and 1 more)")


def test_an_unreachable_gwosc_is_one_line_with_the_offline_choices(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    offline = GwoscStrain(host="http://127.0.0.1:9", cache_dir=str(tmp_path / "cache"), pad=PAD, progress=False)
    with pytest.raises(StrainUnreachable) as caught:
        images(offline).render(BATCH, tmp_path / "out")
    line = user_message(caught.value)
    assert line is not None
    # the cause in a few words, not the layers urllib3 and requests wrap around it
    assert line.startswith("cannot reach GWOSC at 127.0.0.1:9 to locate the strain of 3 candidates (ConnectionError: "
                           "Failed to establish a new connection: [Errno 111] Connection refused); ")
    assert "'~images/strain' images.allow_synthetic=true" in line and "images/strain=files" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    # a demo that allows synthetic strain goes on, saying so once
    caplog.set_level(logging.WARNING, logger="glitchrun")
    rendered = images(offline, allow_synthetic=True).render(BATCH, tmp_path / "out")
    assert list(rendered["strain_source"]) == ["synthetic"] * 3
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 2 and said[0].startswith("cannot reach GWOSC at 127.0.0.1:9") and "synthetic" in said[1]
