"""Synthetic Q-scans look like their class: the signal model of ``glitchrun.images.strain.GlitchModel`` puts each
class's energy where a Gravity Spy volunteer expects it, measured on the Q plane the images are drawn from
(``glitchrun.images.qscan.q_transform``) for the class's median candidate of the calibrated generator."""

from __future__ import annotations

import numpy as np
import pytest

from glitchrun.data.synthetic import FIT, LOG_FEATURES
from glitchrun.images.qscan import q_transform
from glitchrun.images.strain import GlitchModel, SyntheticStrain

TIMES = np.linspace(-2, 2, 201)
FREQUENCIES = np.geomspace(10, 2048, 121)
#: normalised energy above which a pixel is glitch, not noise (noise alone stays below ~12 on this grid)
LOUD = 20.0


def energy(label: str, seed: int = 0) -> np.ndarray:
    """Normalised Q-plane energy (frequencies x times) of the class's median synthetic candidate."""
    row = {**dict(zip(LOG_FEATURES, FIT.shapes[label].median, strict=True)), "truth": label}
    segment = SyntheticStrain(seed=seed).segment(f"signature-{label}", row)
    return q_transform(segment, shown=(TIMES[0], TIMES[-1])).grid(TIMES, FREQUENCIES)


def extent(loud: np.ndarray) -> tuple[float, float, float, float]:
    """(first time, last time, lowest frequency, highest frequency) of the loud pixels."""
    times, freqs = TIMES[loud.any(axis=0)], FREQUENCIES[loud.any(axis=1)]
    return times.min(), times.max(), freqs.min(), freqs.max()


def ridge(e: np.ndarray, t: float) -> float:
    """The frequency of the loudest pixel at time ``t``."""
    return float(FREQUENCIES[e[:, np.argmin(np.abs(TIMES - t))].argmax()])


def top(loud: np.ndarray, t: float) -> float:
    """The highest loud frequency at time ``t`` (0 when none)."""
    rows = np.flatnonzero(loud[:, np.argmin(np.abs(TIMES - t))])
    return float(FREQUENCIES[rows.max()]) if rows.size else 0.0


def pulses(loud: np.ndarray) -> int:
    """How many separate stretches of time hold loud pixels."""
    active = loud.any(axis=0).astype(int)
    return int(np.sum(np.diff(active) == 1) + active[0])


@pytest.mark.parametrize("label", ["Blip", "Tomte", "Koi_Fish", "Extremely_Loud", "Helix", "1400Ripples"])
def test_bursts_are_short_and_at_the_candidates_frequency(label: str):
    e = energy(label)
    start, end, _low, _high = extent(e > max(LOUD, 0.5 * e.max()))
    assert end - start <= 0.15 and abs(start) <= 0.1
    peak = FREQUENCIES[e.max(axis=1).argmax()]
    assert FIT.shapes[label].median[0] / 2 < peak < FIT.shapes[label].median[0] * 2


def test_a_blip_is_broadband():
    start, end, low, high = extent(energy("Blip") > LOUD)
    assert high / low > 1.8 and end - start <= 0.15  # a vertical stroke: an octave and more in an instant


@pytest.mark.parametrize("label", ["Power_Line", "Violin_Mode", "Low_Frequency_Lines"])
def test_lines_are_long_and_narrow(label: str):
    e = energy(label)
    start, end, low, high = extent(e > max(LOUD, 0.5 * e.max()))
    line = GlitchModel.LINE_FREQUENCY.get(label, FIT.shapes[label].median[0])
    assert end - start >= 1.0 and line / 1.15 < low <= high < line * 1.15


def test_a_wandering_line_drifts():
    e = energy("Wandering_Line")
    start, end, _low, _high = extent(e > max(LOUD, 0.5 * e.max()))
    assert end - start >= 0.8 and ridge(e, end - 0.1) > ridge(e, start + 0.1) * 1.05


def test_scattered_light_is_low_frequency_arches():
    e = energy("Scattered_Light")
    start, end, _low, high = extent(e > LOUD)
    assert end - start >= 3 and high < 300
    # arches: highest at the centre, lower on the way down, their feet at ±1 s below the plot
    loud = e > LOUD
    assert 0 < max(top(loud, -0.5), top(loud, 0.5)) < top(loud, 0.0) / 1.2
    assert top(loud, -0.95) == top(loud, 0.95) == 0


def test_a_whistle_is_a_high_frequency_v():
    e = energy("Whistle")
    start, end, low, _high = extent(e > LOUD)
    assert low > 400 and end - start < 0.8
    assert ridge(e, -0.15) > 1.3 * ridge(e, 0.0) < ridge(e, 0.15)


def test_a_chirp_rises():
    e = energy("Chirp")
    start, end, _low, _high = extent(e > LOUD)
    assert top(e > LOUD, end) > 1.3 * top(e > LOUD, start) and end <= 0.05  # rising, then gone


@pytest.mark.parametrize("label,least", [("Repeating_Blips", 3), ("Scratchy", 4), ("Paired_Doves", 2)])
def test_trains_are_several_pulses(label: str, least: int):
    e = energy(label)
    assert pulses(e > max(LOUD, 0.3 * e.max())) >= least


def test_no_glitch_is_noise_only():
    assert energy("No_Glitch").max() < LOUD
