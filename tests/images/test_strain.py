"""Strain sources: the real npz examples, gwpy-read files, and synthetic series built from a candidate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from glitchrun.data.loaders import CANONICAL_COLUMNS
from glitchrun.images.strain import (
    FileStrain,
    GlitchModel,
    NpzStrain,
    SyntheticStrain,
    design_psd,
)

NPZ = "o3_glitch_strain_examples.npz"


@pytest.fixture(scope="module")
def npz(shared_data: Path) -> NpzStrain:
    return NpzStrain(shared_data / NPZ)


def test_npz_candidates_are_canonical_rows_of_the_real_segments(npz: NpzStrain, shared_data: Path):
    frame = npz.candidates()
    raw = np.load(shared_data / NPZ)
    assert list(frame.columns) == [*CANONICAL_COLUMNS, "run"]
    assert frame.index.name == "id" and frame.index.is_unique and len(frame) == len(raw["strain"]) == 60
    assert frame.index[7] == "o3strain-7"
    assert (frame["label"].to_numpy() == raw["label"]).all() and (frame["ifo"].to_numpy() == raw["ifo"]).all()
    np.testing.assert_array_equal(frame["snr"].to_numpy(), raw["snr"])
    assert frame["peak_frequency"].isna().all() and frame["event_time"].isna().all()
    assert set(frame["label"]) == {"Blip", "Tomte", "Light_Modulation", "Scattered_Light", "Whistle"}
    assert frame["truth"].isna().all()
    hidden = npz.candidates(labels_as="truth")
    assert hidden["label"].isna().all() and (hidden["truth"] == frame["label"]).all()


def test_npz_segment_is_the_stored_array_with_the_glitch_in_the_middle(npz: NpzStrain, shared_data: Path):
    raw = np.load(shared_data / NPZ)
    segment = npz.segment("o3strain-12", {})
    np.testing.assert_array_equal(segment.data, raw["strain"][12])
    assert segment.sample_rate == 4096 and segment.duration == 14 and segment.centre == 7
    for unknown in ("o3strain-60", "o3strain-x", "other-3", "3"):
        assert npz.segment(unknown, {}) is None


def test_file_strain_reads_around_the_event_time(npz: NpzStrain, tmp_path: Path):
    from gwpy.timeseries import TimeSeries

    segment = npz.segment("o3strain-0", {})
    t0 = 1250000000.0
    path = tmp_path / "H1-strain.hdf5"
    TimeSeries(segment.data, sample_rate=segment.sample_rate, t0=t0).write(path, path="H1:STRAIN")
    event_time = t0 + 6.5
    row = {"event_time": event_time, "strain": str(path)}
    read = FileStrain(channel="H1:STRAIN", pad=4).segment("c", row)
    assert read.duration == pytest.approx(8) and read.centre == pytest.approx(4)
    first = int(2.5 * segment.sample_rate)
    np.testing.assert_allclose(read.data, segment.data[first:first + read.data.size])
    # the file may come from the source instead of the row; without a file it is not this source's
    assert FileStrain(path=str(path), channel="H1:STRAIN", pad=4).segment("c", {"event_time": event_time}) is not None
    assert FileStrain().segment("c", {"event_time": event_time}) is None
    with pytest.raises(ValueError, match="'c' has strain in .* but no event_time"):
        FileStrain(channel="H1:STRAIN").segment("c", {"event_time": math.nan, "strain": str(path)})


def test_synthetic_is_deterministic_per_candidate_and_seed():
    row = {"peak_frequency": 200.0, "snr": 20.0}
    a = SyntheticStrain(seed=1).segment("c1", row).data
    np.testing.assert_array_equal(a, SyntheticStrain(seed=1).segment("c1", row).data)
    assert not np.array_equal(a, SyntheticStrain(seed=2).segment("c1", row).data)
    assert not np.array_equal(a, SyntheticStrain(seed=1).segment("c2", row).data)


def test_synthetic_noise_follows_the_design_psd():
    from scipy.signal import welch

    segment = SyntheticStrain(duration=32).segment("noise", {"snr": 1e-9})
    freqs, psd = welch(segment.data, fs=segment.sample_rate, nperseg=int(4 * segment.sample_rate))
    band = (freqs > 20) & (freqs < 3000)
    ratio = psd[band] / design_psd(freqs[band])
    assert np.median(ratio) == pytest.approx(1, rel=0.1)
    assert np.percentile(ratio, 5) > 0.5 and np.percentile(ratio, 95) < 1.6


@pytest.mark.parametrize("frequency,snr", [(60.0, 12.0), (300.0, 30.0), (1200.0, 50.0)])
def test_synthetic_glitch_has_the_candidate_snr(frequency: float, snr: float):
    """Matched filtering with the model itself against the known PSD recovers the candidate's SNR."""
    row = {"peak_frequency": frequency, "duration": 0.3, "bandwidth": 500.0, "snr": snr}
    source = SyntheticStrain()
    segment = source.segment(f"f{frequency}", row)
    rate, n = segment.sample_rate, segment.data.size
    model = GlitchModel.from_row(row, max_frequency=0.4 * rate)
    psd = design_psd(np.fft.rfftfreq(n, 1 / rate))[1:]
    data = np.fft.rfft(segment.data)[1:] / rate
    recovered = []
    for phase in (0.0, math.pi / 2):  # quadrature pair: the injection's phase is unknown
        template = np.fft.rfft(model.waveform(np.arange(n) / rate - segment.centre, phase))[1:] / rate
        inner = 4 * rate / n * np.sum(data * template.conj() / psd).real
        recovered.append(inner / math.sqrt(4 * rate / n * np.sum(np.abs(template) ** 2 / psd)))
    assert math.hypot(*recovered) == pytest.approx(snr, abs=3)


def test_glitch_model_takes_the_candidate_features_and_falls_back():
    blip = GlitchModel.from_row({"peak_frequency": 199, "duration": 0.27, "bandwidth": 1595, "snr": 22.8},
                                max_frequency=3000)
    assert blip.frequency == 199 and blip.snr == 22.8 and blip.q == pytest.approx(5.5, abs=0.2)
    whistle = GlitchModel.from_row({"peak_frequency": 1093, "duration": 0.59, "bandwidth": 4788, "snr": 9.5},
                                   max_frequency=3000)
    assert whistle.q == pytest.approx(25.5, abs=0.5)
    bare = GlitchModel.from_row({"peak_frequency": math.nan, "central_frequency": 80.0, "snr": None},
                                max_frequency=3000)
    assert (bare.frequency, bare.q, bare.snr) == (80.0, GlitchModel.DEFAULT_Q, GlitchModel.DEFAULT_SNR)
    assert GlitchModel.from_row({"peak_frequency": 5000.0}, max_frequency=3000).frequency == 3000
