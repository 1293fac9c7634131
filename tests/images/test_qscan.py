"""Q-scan images: the transform finds glitches where they are (real O3 strain and synthetic series), agrees
with gwpy's, and the PNGs have the configured size, are deterministic and render in parallel."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from matplotlib.image import imread

from glitchrun.images.qscan import STRAIN_COLUMNS, MissingStrainError, QScanImages, file_stem, image_column, q_transform
from glitchrun.images.strain import FileStrain, GwoscStrain, NpzStrain, SyntheticStrain

#: the top colour of viridis, as 8-bit RGB: where normalised energy reaches vmax
SATURATED = np.array([253, 231, 37])


@pytest.fixture(scope="module")
def npz(shared_data: Path) -> NpzStrain:
    return NpzStrain(shared_data / "o3_glitch_strain_examples.npz")


def synthetic_rows(**features: list) -> pd.DataFrame:
    n = len(next(iter(features.values())))
    return pd.DataFrame({"ifo": ["L1"] * n, **features}, index=pd.Index([f"syn-{i}" for i in range(n)], name="id"))


def tile(q: float, frequency: float) -> tuple[float, float]:
    """(duration, bandwidth) of an Omega tile: bandwidth 2√π f/Q, duration its inverse."""
    bandwidth = 2 * math.sqrt(math.pi) * frequency / q
    return 1 / bandwidth, bandwidth


def brightest(images: QScanImages, cid: str, row: dict, window: float) -> tuple[float, float]:
    """(time, frequency) of the brightest pixel of the ``window`` image's energy grid."""
    plane = images.transform(cid, row)
    times = np.linspace(-window / 2, window / 2, 560)
    freqs = np.geomspace(*plane.frange, 480)
    row_i, col_i = np.unravel_index(np.argmax(plane.grid(times, freqs)), (freqs.size, times.size))
    return float(times[col_i]), float(freqs[row_i])


# -- where the glitch is ------------------------------------------------------------------------------

@pytest.mark.parametrize("label,windows,tolerance", [
    # short glitches: the catalogue time is the glitch, in every window
    ("Blip", (0.5, 1.0, 2.0, 4.0), 0.01),
    ("Tomte", (0.5, 1.0, 2.0, 4.0), 0.01),
    ("Light_Modulation", (0.5, 1.0, 2.0, 4.0), 0.01),
    # long ones: the catalogue time marks one point of a structure lasting up to seconds
    ("Whistle", (0.5, 1.0, 2.0), 0.35),
    ("Scattered_Light", (0.5, 1.0, 2.0), 0.35),
])
def test_real_glitches_are_brightest_at_the_event_time(npz: NpzStrain, label: str, windows: tuple,
                                                       tolerance: float):
    images = QScanImages(strain=npz, synthetic=None)
    rows = npz.candidates().query("label == @label and snr >= 15")
    assert len(rows) >= 3
    for cid, row in rows.iterrows():
        for window in windows:
            time, _ = brightest(images, cid, row.to_dict(), window)
            assert abs(time) <= tolerance, f"{cid} ({label}), {window} s window: brightest at {time:+.3f} s"


@pytest.mark.parametrize("frequency,duration,bandwidth,snr", [
    (40.0, 0.7, 1600.0, 30.0),    # Tomte-like
    (200.0, 0.27, 1600.0, 25.0),  # Blip-like
    (900.0, 0.6, 4800.0, 30.0),   # Whistle-like
    (1800.0, 0.1, 500.0, 25.0),   # near the top of the band
])
def test_synthetic_glitch_is_brightest_at_its_time_and_frequency(frequency, duration, bandwidth, snr):
    rows = synthetic_rows(peak_frequency=[frequency], duration=[duration], bandwidth=[bandwidth], snr=[snr])
    plane = QScanImages(allow_synthetic=True).transform("syn-0", rows.iloc[0].to_dict())
    tile_duration, tile_bandwidth = tile(plane.q, frequency)
    assert abs(plane.peak_time) <= tile_duration
    assert abs(plane.peak_frequency - frequency) <= tile_bandwidth / 2
    # whitening is consistent with the SNR: a matched tile's energy is ρ²/2 over the median of χ²₂/2 (ln 2)
    assert 0.6 <= plane.peak_energy / (snr ** 2 / (2 * math.log(2))) <= 1.3


def test_the_png_shows_the_glitch_at_its_time_and_frequency(tmp_path: Path):
    """Read the image back: the saturated pixels sit at the centre time and the glitch frequency."""
    frequency, window = 250.0, 1.0
    images = QScanImages(durations=[window], n_jobs=1, progress=False, allow_synthetic=True)
    names = images.render(synthetic_rows(peak_frequency=[frequency], snr=[40.0]), tmp_path)
    pixels = (imread(tmp_path / names.iloc[0, 0])[..., :3] * 255).round()
    rows, columns = images.plot_area
    area = pixels[rows, columns]
    hot_rows, hot_columns = np.nonzero((np.abs(area - SATURATED) <= 2).all(axis=-1))
    assert hot_rows.size > 20
    height, width = area.shape[:2]
    time = (hot_columns.mean() + 0.5) / width * window - window / 2
    low, high = math.log(10), math.log(SyntheticStrain().sample_rate / 2 / (1 + math.sqrt(11) / 4))
    found = math.exp(high - (hot_rows.mean() + 0.5) / height * (high - low))
    assert abs(time) < 0.01
    assert found == pytest.approx(frequency, rel=0.15)


def test_a_file_named_by_the_candidate_is_used_before_synthetic(npz: NpzStrain, tmp_path: Path):
    from gwpy.timeseries import TimeSeries

    segment = npz.segment("o3strain-4", {})  # a loud Tomte
    path = tmp_path / "L1-strain.hdf5"
    TimeSeries(segment.data, sample_rate=segment.sample_rate, t0=1250000000).write(path, path="strain")
    row = {"ifo": "H1", "event_time": 1250000000 + segment.centre, "strain": str(path), "peak_frequency": 900.0}
    images = QScanImages(strain=FileStrain(pad=6), allow_synthetic=True)  # the file: 7 s each side of the glitch
    assert images.strain("c", row).origin == f"file {path}"
    plane = images.transform("c", row)
    assert abs(plane.peak_time) < 0.01 and plane.peak_frequency < 100  # the real Tomte, not a 900 Hz model


# -- agreement with gwpy ------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["o3strain-0", "o3strain-4", "o3strain-6", "o3strain-27", "synthetic"])
def test_own_q_transform_finds_the_same_peak_tile_as_gwpy(npz: NpzStrain, cid: str):
    from gwpy.timeseries import TimeSeries

    if cid == "synthetic":
        segment = SyntheticStrain().segment(cid, {"peak_frequency": 300.0, "duration": 0.2, "bandwidth": 900.0,
                                                 "snr": 25.0})
    else:
        segment = npz.segment(cid, {})
    plane = q_transform(segment, span=8.0)
    series = TimeSeries(segment.data, sample_rate=segment.sample_rate, t0=-segment.centre)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gwpy warns that 2048 Hz is capped for 4096 Hz data, as we do
        reference = series.q_transform(qrange=(4, 64), frange=(10, 2048), gps=0, search=0.5,
                                       outseg=(-0.25, 0.25), tres=0.0005, fres=1000, logf=True)
    t_index, f_index = np.unravel_index(np.argmax(reference.value), reference.shape)
    ref_time = float(reference.times.value[t_index])
    ref_frequency = float(reference.frequencies.value[f_index])
    tile_duration, tile_bandwidth = tile(reference.q, ref_frequency)
    assert plane.q == pytest.approx(reference.q)
    assert abs(plane.peak_time - ref_time) <= tile_duration
    assert abs(plane.peak_frequency - ref_frequency) <= tile_bandwidth / 2


# -- the images ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(800, 600), (641, 479)])
def test_images_have_the_configured_pixel_size(tmp_path: Path, size: tuple[int, int]):
    images = QScanImages(durations=[0.5, 4], size=size, n_jobs=1, progress=False, allow_synthetic=True)
    names = images.render(synthetic_rows(peak_frequency=[120.0]), tmp_path)
    for name in names.iloc[0, :2]:
        height, width = imread(tmp_path / name).shape[:2]
        assert (width, height) == size


def test_batch_renders_in_parallel_deterministically(npz: NpzStrain, tmp_path: Path):
    real = npz.candidates().loc[["o3strain-0", "o3strain-3", "o3strain-27"]]
    extra = synthetic_rows(peak_frequency=[600.0], snr=[30.0]).rename(index={"syn-0": "odd/id 1"})
    batch = pd.concat([real, extra])
    parallel = QScanImages(strain=npz, n_jobs=2, progress=False, allow_synthetic=True).render(batch,
                                                                                              tmp_path / "parallel")
    serial = QScanImages(strain=npz, n_jobs=1, progress=False, allow_synthetic=True).render(batch, tmp_path / "serial")

    assert list(parallel.columns) == ["image_0.5s", "image_1s", "image_2s", "image_4s", *STRAIN_COLUMNS]
    assert list(parallel["strain_source"]) == ["npz", "npz", "npz", "synthetic"]
    assert parallel.loc["o3strain-3", "strain_file"] == "o3_glitch_strain_examples.npz[3]"
    assert list(parallel["sample_rate"]) == [4096.0, 4096.0, 4096.0, 8192.0]
    parallel = parallel.drop(columns=list(STRAIN_COLUMNS))
    assert parallel.index.name == "id" and list(parallel.index) == list(batch.index)
    assert parallel.loc["o3strain-3", "image_2s"] == "o3strain-3_2s.png"
    assert parallel.loc["odd/id 1", "image_0.5s"] == f"{file_stem('odd/id 1')}_0.5s.png"
    pd.testing.assert_frame_equal(parallel, serial.drop(columns=list(STRAIN_COLUMNS)))
    for name in parallel.to_numpy().ravel():
        assert "/" not in name
        assert (tmp_path / "parallel" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    assert len({(tmp_path / "parallel" / n).read_bytes() for n in parallel.to_numpy().ravel()}) == parallel.size


def test_images_do_not_depend_on_the_process_rcparams(tmp_path: Path):
    """gwpy changes matplotlib's rcParams when imported; a worker that read a frame file must draw alike."""
    import matplotlib

    from glitchrun.images import qscan

    images = QScanImages(durations=[1.0], n_jobs=1, progress=False, allow_synthetic=True)
    rows = synthetic_rows(peak_frequency=[120.0])
    qscan._canvas.cache_clear()
    before = images.render(rows, tmp_path / "before").iloc[0, 0]
    qscan._canvas.cache_clear()
    with matplotlib.rc_context({"axes.grid": True, "font.size": 30, "axes.edgecolor": "red"}):
        after = images.render(rows, tmp_path / "after").iloc[0, 0]
    qscan._canvas.cache_clear()
    assert (tmp_path / "before" / before).read_bytes() == (tmp_path / "after" / after).read_bytes()


def test_file_stems_are_safe_deterministic_and_distinct():
    ids = ["a/b", "a_b", "a b", "../x", "ok-1.2_x"]
    stems = [file_stem(i) for i in ids]
    assert len(set(stems)) == len(ids) and stems[-1] == "ok-1.2_x"
    assert all("/" not in s and " " not in s and not s.startswith(".") for s in stems)
    assert stems == [file_stem(i) for i in ids]
    assert image_column(0.5) == "image_0.5s" and image_column(4.0) == "image_4s"


def test_real_candidates_without_strain_stop_before_any_image(tmp_path: Path):
    rows = synthetic_rows(peak_frequency=[100.0, 200.0])
    with pytest.raises(MissingStrainError, match=r"2 of 2 candidates \('syn-0', 'syn-1'\).*images/strain=gwosc"):
        QScanImages(n_jobs=1, progress=False).render(rows, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert QScanImages(n_jobs=1, progress=False).render(synthetic_rows(peak_frequency=[]), tmp_path / "out").empty
    # made-up candidates (data=synthetic) get synthetic strain without asking
    made_up = QScanImages(durations=[1.0], size=(160, 120), n_jobs=1, progress=False,
                          data_loader="glitchrun.data.loaders.SyntheticData")
    assert list(made_up.render(rows, tmp_path / "out")["strain_source"]) == ["synthetic", "synthetic"]


@pytest.mark.parametrize("overrides,real,synthetic", [
    ([], [FileStrain], True),                                                  # data=synthetic: made-up strain
    (["data=gravityspy"], [FileStrain], False),                                # real events: never synthetic
    (["data=gravityspy", "images.allow_synthetic=true"], [FileStrain], True),  # unless allowed (demos)
    (["data=csv", "images/strain=gwosc", "images.strain.sample_rate=16384"], [GwoscStrain, FileStrain], False),
])
def test_config_builds_the_gravity_spy_defaults_and_the_strain_policy(overrides, real, synthetic):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=["seed=7", *overrides])
    images = instantiate(cfg.images)
    assert isinstance(images, QScanImages)
    assert images.durations == (0.5, 1.0, 2.0, 4.0) and images.frange == (10, 2048) and images.qrange == (4, 64)
    assert images.size == (800, 600) and images.cmap == "viridis" and images.vmax == 25.5
    assert [type(s) for s in images.sources] == real
    assert (images.synthetic is not None) == synthetic
    if synthetic:
        assert isinstance(images.synthetic, SyntheticStrain) and images.synthetic.seed == 7
    if GwoscStrain in real:
        assert images.sources[0].sample_rate == 16384 and images.sources[0].cache_dir.is_absolute()
