"""Strain around each glitch candidate, for the Q-scan images.

Three sources answer the same question, "the time series around candidate ``id``", so the Q-scan code
never needs to know where data came from:

- ``NpzStrain``: real segments stored as arrays (like the shared O3 examples); it also lists its segments
  as canonical candidate rows, so the file doubles as a small real dataset.
- ``FileStrain``: frame or HDF5 files read with gwpy around each candidate's ``event_time``.
- ``SyntheticStrain``: detector-like coloured noise with a sine-Gaussian carrying the candidate's peak
  frequency, duration, bandwidth and SNR, for candidates without recorded data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from glitchrun.data.loaders import canonical, check_labels_as, use_labels_as


@dataclass(frozen=True)
class StrainSegment:
    """A stretch of (unwhitened) strain with the glitch ``centre`` seconds after its first sample."""

    data: np.ndarray
    sample_rate: float
    centre: float
    origin: str

    @property
    def duration(self) -> float:
        return self.data.size / self.sample_rate


class StrainSource(Protocol):
    """Anything that can give the strain around a candidate, or ``None`` when it holds none for it."""

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None: ...


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` for NaN, NA, None and non-numbers."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def positive(row: Mapping[str, Any], *columns: str) -> float | None:
    """The first of ``columns`` holding a positive number in ``row`` (missing values are skipped)."""
    for column in columns:
        value = number(row.get(column))
        if value is not None and value > 0:
            return value
    return None


# -- real strain: arrays in an npz --------------------------------------------------------------------

@lru_cache(maxsize=4)
def _load_npz(path: str) -> dict[str, np.ndarray]:
    """The npz's arrays, read once per process (each worker reads the file itself: nothing big is pickled)."""
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


class NpzStrain:
    """Real strain segments from an npz with arrays ``strain`` (n × samples), ``sample_rate`` and, per
    segment, ``label``, ``ifo``, ``snr`` (and optionally ``run``), like ``o3_glitch_strain_examples.npz``.

    Segment ``i`` is candidate ``<prefix>-<i>``; its glitch sits at ``centre`` seconds from the segment
    start (``None``: the middle, where the shared examples put it).
    """

    def __init__(self, path: str | Path, prefix: str = "o3strain", centre: float | None = None) -> None:
        self.path = str(path)
        self.prefix = prefix
        self.centre = centre

    def _arrays(self) -> dict[str, np.ndarray]:
        return _load_npz(self.path)

    def ids(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(len(self._arrays()["strain"]))]

    def candidates(self, labels_as: str = "label") -> pd.DataFrame:
        """Canonical candidate rows for the segments (index ``id``, ``run`` as an extra column when stored).

        Only ``ifo``, ``snr`` and the Gravity Spy label are known: the npz has no GPS times or Omicron
        features, so those are NaN. ``labels_as="truth"`` hides the labels as ground truth (a simulation).
        """
        check_labels_as(labels_as)
        arrays = self._arrays()
        extra = [name for name in ("run",) if name in arrays]
        table = pd.DataFrame({"id": self.ids(), **{name: arrays[name] for name in ("ifo", "snr", "label", *extra)}})
        return use_labels_as(canonical(table, extra=extra), labels_as)

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        prefix, _, index = cid.rpartition("-")
        arrays = self._arrays()
        if prefix != self.prefix or not index.isdigit() or int(index) >= len(arrays["strain"]):
            return None
        data = arrays["strain"][int(index)].astype(np.float64)
        rate = float(arrays["sample_rate"])
        centre = self.centre if self.centre is not None else data.size / rate / 2
        return StrainSegment(data, rate, centre, origin=f"npz {Path(self.path).name}[{index}]")


# -- real strain: frame / HDF5 files read by gwpy -----------------------------------------------------

class FileStrain:
    """Strain read with gwpy's ``TimeSeries.read`` from ``event_time - pad`` to ``event_time + pad``.

    The file is the candidate's ``column`` value when it has one (a per-candidate file), else ``path``;
    ``channel`` is the channel (frames) or dataset (HDF5) name, ``None`` where gwpy needs none (GWOSC HDF5).
    """

    def __init__(self, path: str | None = None, channel: str | None = None, column: str = "strain",
                 pad: float = 8.0, format: str | None = None) -> None:
        self.path = path
        self.channel = channel
        self.column = column
        self.pad = pad
        self.format = format

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        source = row.get(self.column)
        if not isinstance(source, (str, Path)) or not str(source):
            source = self.path
        if source is None:
            return None
        event_time = number(row.get("event_time"))
        if event_time is None:  # recorded data exist: an image of made-up data would mislead volunteers
            raise ValueError(f"candidate {cid!r} has strain in {source} but no event_time to read it at")
        from gwpy.timeseries import (
            TimeSeries,  # gwpy is slow to import; only file reads need it
        )

        args = [] if self.channel is None else [self.channel]
        kwargs = {} if self.format is None else {"format": self.format}
        series = TimeSeries.read(str(source), *args, start=event_time - self.pad,
                                 end=event_time + self.pad, **kwargs)
        return StrainSegment(np.asarray(series.value, dtype=np.float64),
                             float(series.sample_rate.to("Hz").value),
                             float(event_time - series.t0.value), origin=f"file {source}")


# -- synthetic strain ---------------------------------------------------------------------------------

def design_psd(frequencies: np.ndarray) -> np.ndarray:
    """One-sided PSD of an Advanced-LIGO-like detector, in (strain × 1e21)² / Hz.

    The zero-detuned high-power design fit of Ajith (2011), held flat below 5 Hz so that the seismic wall
    stays finite: strongly coloured like real data, so whitening is exercised the same way.
    """
    x = np.maximum(np.asarray(frequencies, dtype=np.float64), 5.0) / 215.0
    return 1e-7 * (x ** -4.14 - 5 * x ** -2 + 111 * (1 - x ** 2 + x ** 4 / 2) / (1 + x ** 2 / 2))


def stable_seed(*parts: object) -> int:
    """A seed from ``parts`` that is the same in every process (``hash()`` of a str is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class GlitchModel:
    """A few lines of signal model per Gravity Spy morphology, so a synthetic Q-scan looks like its class.

    The default (``burst``, and any candidate without a known class) is the sine-Gaussian
    ``exp(-t²/τ²) sin(2π f t + φ)``, ``τ = Q / (√2 π f)``, with the candidate's peak frequency and Q. A
    simulated candidate's class (``truth``, else ``label``) picks the shape Gravity Spy volunteers know:

    - ``whistle``: a V-shaped high-frequency arc, the frequency falling to ``f`` and rising again;
    - ``chirp``: a frequency rising to ``f`` and stopping, like a binary merger;
    - ``arches``: scattered light's stacked low-frequency arches, ``f_k(t) = k f |cos(π t / P)|``;
    - ``line``: a narrow line lasting the candidate's duration (at the class's own frequency for the instrumental
      lines: 60 Hz mains, ~500 Hz violin modes, 1080 Hz), ``wandering``: a line whose frequency drifts;
    - ``repeat``: a train of blips, ``doves``: a rising and a falling chirp in pairs, ``scratchy``: a train
      of mid-frequency wiggles of changing pitch;
    - ``none``: no glitch (No_Glitch).
    """

    frequency: float
    q: float
    snr: float
    morphology: str = "burst"
    duration: float = 0.5

    #: when a candidate lacks a value: a mid-band frequency, a Blip-like Q, a typical Gravity Spy SNR
    DEFAULT_FREQUENCY = 100.0
    DEFAULT_Q = 6.0
    DEFAULT_SNR = 20.0
    DEFAULT_DURATION = 0.5
    Q_BOUNDS = (3.0, 100.0)
    #: Gravity Spy class -> morphology (classes not listed are bursts)
    MORPHOLOGY: ClassVar[dict[str, str]] = {
        "Whistle": "whistle", "Chirp": "chirp", "Scattered_Light": "arches", "Fast_Scattering": "arches",
        "Power_Line": "line", "Violin_Mode": "line", "1080Lines": "line", "Low_Frequency_Lines": "line",
        "Wandering_Line": "wandering", "Repeating_Blips": "repeat", "Paired_Doves": "doves",
        "Scratchy": "scratchy", "No_Glitch": "none",
    }
    #: lines at an instrument's own frequency, whatever Omicron's peak frequency says
    LINE_FREQUENCY: ClassVar[dict[str, float]] = {"Power_Line": 60.0, "Violin_Mode": 500.0, "1080Lines": 1080.0}
    #: about how many Q-scan tiles a shape spans: Omicron's SNR is the loudest tile's, so a glitch spread over
    #: n tiles carries √n times that SNR in all (a 6 s line at the SNR of one tile would vanish in the noise)
    TILES: ClassVar[dict[str, float]] = {"line": 10, "wandering": 10, "arches": 20, "repeat": 4, "doves": 4,
                                         "scratchy": 6, "whistle": 4, "chirp": 2}

    @classmethod
    def from_row(cls, row: Mapping[str, Any], max_frequency: float) -> GlitchModel:
        """The candidate's peak frequency, SNR, duration and class, and the Q whose tile has its
        duration/bandwidth ratio.

        A sine-Gaussian lasts ``τ ∝ Q/f`` and spans ``∝ f/Q``; ``duration/bandwidth = Q²/(√2 π f²)`` gives
        ``Q = f √(√2 π duration / bandwidth)`` (about 5.5 for a mean Blip, 25 for a Whistle).
        """
        label = next((str(row[c]) for c in ("truth", "label") if isinstance(row.get(c), str)), "")
        frequency = cls.LINE_FREQUENCY.get(label) or positive(row, "peak_frequency", "central_frequency") \
            or cls.DEFAULT_FREQUENCY
        frequency = min(frequency, max_frequency)
        duration, bandwidth = positive(row, "duration"), positive(row, "bandwidth")
        q = frequency * math.sqrt(math.sqrt(2) * math.pi * duration / bandwidth) if duration and bandwidth \
            else cls.DEFAULT_Q
        return cls(frequency, float(np.clip(q, *cls.Q_BOUNDS)), positive(row, "snr") or cls.DEFAULT_SNR,
                   cls.MORPHOLOGY.get(label, "burst"), duration or cls.DEFAULT_DURATION)

    @property
    def tau(self) -> float:
        return self.q / (math.sqrt(2) * math.pi * self.frequency)

    @property
    def total_snr(self) -> float:
        """The matched-filter SNR of the whole shape: the candidate's (one tile's) SNR times √tiles."""
        return self.snr * math.sqrt(self.TILES.get(self.morphology, 1))

    def waveform(self, times: np.ndarray, phase: float) -> np.ndarray:
        """The glitch at ``times`` (seconds from its centre, evenly spaced), up to its overall scale."""
        t, f = times, self.frequency
        if self.morphology == "none":
            return np.zeros_like(t)
        if self.morphology == "whistle":  # V-shaped: from 2.5 f down to f and back within ±0.25 s
            return sweep(t, f * (1 + 1.5 * np.minimum(np.abs(t) / 0.25, 1.5)), phase) * np.exp(-(t / 0.25) ** 4)
        if self.morphology == "chirp":  # rising from f/4 to f over 0.5 s, then gone
            ramp = np.clip((t + 0.5) / 0.5, 0, 1)
            return sweep(t, f * 4 ** (ramp - 1), phase) * ramp * (t < 0)
        if self.morphology == "arches":  # arches of period 2 s topping out at f, 2f, 3f, over ±3 s
            envelope = np.exp(-(t / 3) ** 4)
            return sum(sweep(t, k * f * np.abs(np.cos(math.pi * t / 2)) + 1e-3, k * phase) / k
                       for k in (1, 2, 3)) * envelope
        if self.morphology in ("line", "wandering"):  # the candidate's duration, within 0.5-2 s (longer lines
            # weigh in the whitening's median PSD and be whitened away); a wandering line drifts by ±15 %
            drift = 0.15 * np.sin(2 * math.pi * t / 8) if self.morphology == "wandering" else 0.0
            return sweep(t, f * (1 + drift), phase) * np.exp(-(t / np.clip(self.duration, 0.25, 1.0)) ** 4)
        if self.morphology == "repeat":  # four blips 0.3 s apart
            return sum(self.burst(t - offset, f, phase) for offset in (-0.45, -0.15, 0.15, 0.45))
        if self.morphology == "doves":  # a rising and a falling chirp, twice
            shapes = [sweep(t, f * (1.5 + sign * 0.5 * np.tanh((t - offset) / 0.05)), phase)
                      * np.exp(-((t - offset) / 0.08) ** 2)
                      for offset, sign in ((-0.35, 1), (-0.15, -1), (0.15, 1), (0.35, -1))]
            return sum(shapes)
        if self.morphology == "scratchy":  # six wiggles of changing pitch over 1.5 s
            pitches = (0.7, 1.3, 0.9, 1.2, 0.8, 1.1)
            return sum(self.burst(t - offset, f * pitch, phase, q=8.0)
                       for offset, pitch in zip(np.linspace(-0.75, 0.75, 6), pitches, strict=True))
        return self.burst(t, f, phase)

    def burst(self, times: np.ndarray, frequency: float, phase: float, q: float | None = None) -> np.ndarray:
        """One sine-Gaussian of this model's Q (or ``q``) at ``frequency``, centred at ``times`` = 0."""
        tau = (q or self.q) / (math.sqrt(2) * math.pi * frequency)
        return np.exp(-(times / tau) ** 2) * np.sin(2 * math.pi * frequency * times + phase)


def sweep(times: np.ndarray, frequency: np.ndarray | float, phase: float) -> np.ndarray:
    """A sinusoid whose instantaneous frequency is ``frequency`` (one value, or one per sample) at ``times``."""
    step = times[1] - times[0] if times.size > 1 else 1.0
    return np.sin(2 * math.pi * np.cumsum(np.broadcast_to(frequency, times.shape)) * step + phase)


class SyntheticStrain:
    """Coloured Gaussian noise (``design_psd``) plus the candidate's glitch (``GlitchModel``) at the centre.

    The glitch is scaled to the candidate's SNR against the same PSD (optimal matched-filter SNR), so its
    loudness after whitening is what the candidate says. Noise and phase are drawn from
    ``(seed, candidate id)``: the same candidate always gets the same series. 8192 Hz keeps tiles up to
    2048 Hz inside Nyquist for Q ≥ 4.
    """

    def __init__(self, sample_rate: float = 8192.0, duration: float = 16.0, seed: int = 0) -> None:
        self.sample_rate = float(sample_rate)
        self.duration = float(duration)
        self.seed = seed

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment:
        rate, n = self.sample_rate, int(round(self.duration * self.sample_rate))
        rng = np.random.default_rng(stable_seed(self.seed, cid))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        psd = design_psd(freqs)
        # E|X_k|² = n·rate·S(f_k)/2 for the rfft of noise with one-sided PSD S
        spectrum = np.sqrt(psd * n * rate / 4) * (rng.standard_normal(freqs.size)
                                                  + 1j * rng.standard_normal(freqs.size))
        spectrum[0] = 0
        noise = np.fft.irfft(spectrum, n)

        model = GlitchModel.from_row(row, max_frequency=0.4 * rate)
        centre = n / rate / 2
        glitch = model.waveform(np.arange(n) / rate - centre, phase=rng.uniform(0, 2 * math.pi))
        glitch_f = np.fft.rfft(glitch) / rate
        unit_snr = math.sqrt(4 * np.sum(np.abs(glitch_f[1:]) ** 2 / psd[1:]) * rate / n)
        scale = model.total_snr / unit_snr if unit_snr > 0 else 0.0  # No_Glitch: noise only
        return StrainSegment(noise + glitch * scale, rate, centre,
                             origin=f"synthetic {model.morphology} f={model.frequency:.4g} Hz Q={model.q:.3g} "
                                    f"snr={model.snr:.3g}")
