"""Gravity-Spy-style Q-scan images of glitch candidates (``QScanImages``).

Volunteers classify what they see, so the images follow Gravity Spy's: the Omega/gwpy multi-Q transform
of whitened strain (Q 4–64, 10–2048 Hz), the loudest Q plane within ±0.25 s of the event, shown over
0.5, 1, 2 and 4 s windows centred on it, log-frequency axis, viridis normalised energy from 0 to 25.5.

The transform is our own numpy implementation of gwpy's tiling (``TimeSeries.q_transform``; the tests
check both find the same peak tile). It is faster because it whitens and FFTs each candidate once for
all four durations, crops the whitened data to the span the images need, transforms rows of equal length
with one batched inverse FFT, and interpolates only onto the image's own pixel grid. Each worker process
has matplotlib (no pyplot) draw the Gravity Spy frame once per window and title, and pastes each image's
colour-mapped pixels into it, instead of building and drawing a figure per image.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from matplotlib import colormaps, style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image
from scipy.signal import welch
from scipy.signal.windows import tukey
from tqdm.auto import tqdm

from glitchrun.data.loaders import SyntheticData
from glitchrun.images.strain import (
    FileStrain,
    RealStrainSource,
    StrainSegment,
    SyntheticStrain,
)

log = logging.getLogger(__name__)

#: Gravity Spy's settings (gravityspy.utils.GravitySpyConfigFile and its plot code)
GRAVITY_SPY_DURATIONS = (0.5, 1.0, 2.0, 4.0)
GRAVITY_SPY_FRANGE = (10.0, 2048.0)
GRAVITY_SPY_QRANGE = (4.0, 64.0)
GRAVITY_SPY_SIZE = (800, 600)
GRAVITY_SPY_VMAX = 25.5

#: maximum fractional energy mismatch between neighbouring tiles (Omega's and gwpy's default)
MISMATCH = 0.2
DELTAM = 2 * math.sqrt(MISMATCH / 3)
#: seconds of data kept on each side of the longest window: the longest tiles (10 Hz, Q 64) last ~1 s
MARGIN = 2.0
#: ASD estimate for whitening: 2 s Hann segments, 50 % overlap, median average (gwpy's defaults)
FFTLENGTH = 2.0
#: seconds of Tukey taper at each end of the data before the whitening FFT
TAPER = 0.5
DPI = 100
#: entries of the colour table (matplotlib's default colormap resolution)
LUT_SIZE = 256
#: zlib level of the PNGs: 4 writes twice as fast as 6 for ~8 % more bytes (about 175 kB at 800 × 600)
PNG_COMPRESSION = 4
#: the strain's origin, recorded per subject after the image columns of ``QScanImages.render``
STRAIN_COLUMNS = ("strain_source", "strain_file", "sample_rate")
IFO_NAMES = {"H1": "Hanford", "L1": "Livingston", "V1": "Virgo", "K1": "KAGRA"}


# -- the Q transform ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _RowGroup:
    """Adjacent rows of one Q plane with the same number of tiles, transformed by one batched IFFT.

    ``flat`` says where each windowed spectrum sample goes in the (rows × ntiles) array, ``bins`` which
    rfft bin it comes from and ``window`` its bi-square weight.
    """

    frequencies: np.ndarray
    ntiles: int
    flat: np.ndarray
    bins: np.ndarray
    window: np.ndarray

    def energies(self, spectrum: np.ndarray) -> np.ndarray:
        """Tile energies (rows × ntiles), each row normalised by its median as gwpy's ``norm='median'``."""
        rows = np.zeros(self.frequencies.size * self.ntiles, dtype=np.complex128)
        rows[self.flat] = spectrum[self.bins] * self.window
        energy = np.abs(np.fft.ifft(rows.reshape(self.frequencies.size, self.ntiles), axis=1)) ** 2
        return energy / np.median(energy, axis=1, keepdims=True)


def _row_frequencies(q: float, fmin: float, fmax: float, duration: float) -> np.ndarray:
    """Row centre frequencies of a plane: log-spaced by the mismatch, rounded down to FFT bins."""
    cumulative = math.log(fmax / fmin) * math.sqrt(2 + q ** 2) / 2
    nfreq = max(1, math.ceil(cumulative / DELTAM))
    steps = (np.arange(nfreq) + 0.5) * cumulative / nfreq
    freqs = fmin * np.exp(2 / math.sqrt(2 + q ** 2) * steps) // (1 / duration) * (1 / duration)
    return np.unique(freqs)


def _row_groups(q: float, frequencies: np.ndarray, duration: float) -> list[_RowGroup]:
    """The bi-square windows and tile counts of each row (Omega's tiling), grouped by tile count."""
    qprime = q / math.sqrt(11)
    ntiles = 2 ** np.ceil(np.log2(duration * 2 * math.pi * frequencies / q / DELTAM)).astype(int)
    groups = []
    for n in np.unique(ntiles):
        freqs = frequencies[ntiles == n]
        flat, bins, window = [], [], []
        for row, f in enumerate(freqs):
            half = int(f / qprime * duration)
            offsets = np.arange(-half, half + 1)
            # the window is centred on tile-array index 0 (negative offsets wrap to the end): the same
            # energies as gwpy's padded-and-shifted layout, which only differs by a phase ramp
            flat.append(row * n + offsets % n)
            bins.append(np.round(offsets + f * duration).astype(int))
            window.append((1 - (offsets / duration * qprime / f) ** 2) ** 2)
        groups.append(_RowGroup(freqs, int(n), np.concatenate(flat), np.concatenate(bins),
                                np.concatenate(window)))
    return groups


@dataclass(frozen=True)
class QTiling:
    """The Q planes ``(q, row groups)`` tiling ``frange``; its top is capped where the lowest-Q tiles
    would cross Nyquist (as gwpy does, with a warning): ~1120 Hz for 4096 Hz data."""

    frange: tuple[float, float]
    planes: tuple[tuple[float, tuple[_RowGroup, ...]], ...]


@lru_cache(maxsize=16)
def q_tiling(qrange: tuple[float, float], frange: tuple[float, float], duration: float,
             sample_rate: float) -> QTiling:
    """Omega's tiling of ``qrange`` × ``frange`` for data of this length and rate (cached: every candidate
    with the same sample rate shares it)."""
    cumulative = math.log(qrange[1] / qrange[0]) / math.sqrt(2)
    nplanes = max(1, math.ceil(cumulative / DELTAM))
    qs = qrange[0] * np.exp(math.sqrt(2) * cumulative / nplanes * (np.arange(nplanes) + 0.5))
    band = (frange[0], min(frange[1], sample_rate / 2 / (1 + math.sqrt(11) / qrange[0])))
    return QTiling(band, tuple((float(q), tuple(_row_groups(q, _row_frequencies(q, *band, duration), duration)))
                               for q in qs))


def whiten(data: np.ndarray, sample_rate: float) -> np.ndarray:
    """``data`` divided by its own ASD in the frequency domain (median Welch estimate), back in time.

    Dividing the full-length spectrum by the ASD is the long-FIR limit of gwpy's whitening filter; the
    taper keeps the edges from leaking, and the Q scan later drops the edges the division wraps around.
    """
    nperseg = int(FFTLENGTH * sample_rate)
    freqs_asd, psd = welch(data, fs=sample_rate, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                           average="median")
    taper = tukey(data.size, alpha=min(1.0, 2 * TAPER * sample_rate / data.size))
    spectrum = np.fft.rfft((data - data.mean()) * taper)
    asd = np.sqrt(np.interp(np.fft.rfftfreq(data.size, 1 / sample_rate), freqs_asd, psd))
    spectrum = np.divide(spectrum, asd, out=np.zeros_like(spectrum), where=asd > 0)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, data.size)


@dataclass(frozen=True)
class QPlane:
    """The Q plane with the loudest tile near the event: normalised tile energies, times from the event.

    ``energies[i]`` belongs to ``groups[i]``; its column ``j`` is the tile at ``start + j * span / ntiles``.
    ``frange`` is the band tiled (its top capped by the sample rate, see ``QTiling``).
    """

    q: float
    frange: tuple[float, float]
    groups: tuple[_RowGroup, ...]
    energies: tuple[np.ndarray, ...]
    start: float
    span: float
    peak_time: float
    peak_frequency: float
    peak_energy: float

    @property
    def frequencies(self) -> np.ndarray:
        return np.concatenate([g.frequencies for g in self.groups])

    def grid(self, times: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
        """Normalised energy (len(frequencies) × len(times)), linear in time and in log-frequency."""
        rows = []
        for group, energy in zip(self.groups, self.energies, strict=True):
            position = (times - self.start) / self.span * group.ntiles
            left = np.clip(np.floor(position).astype(int), 0, group.ntiles - 2)
            weight = np.clip(position - left, 0, 1)
            rows.append(energy[:, left] * (1 - weight) + energy[:, left + 1] * weight)
        plane = np.concatenate(rows)
        row_f = np.log(self.frequencies)
        if row_f.size == 1:
            return np.repeat(plane, frequencies.size, axis=0)
        position = np.interp(np.log(frequencies), row_f, np.arange(row_f.size))
        lower = np.minimum(position.astype(int), row_f.size - 2)
        weight = (position - lower)[:, None]
        return plane[lower] * (1 - weight) + plane[lower + 1] * weight


def q_transform(segment: StrainSegment, *, span: float, qrange: tuple[float, float] = GRAVITY_SPY_QRANGE,
                frange: tuple[float, float] = GRAVITY_SPY_FRANGE, search: float = 0.5) -> QPlane:
    """Whiten ``segment``, keep ``span`` seconds around its glitch and return the Q plane whose loudest
    tile within ``±search/2`` of the glitch is the loudest of all planes (gwpy's ``gps``/``search``)."""
    rate = segment.sample_rate
    if segment.duration < span:
        raise ValueError(f"{segment.origin}: {segment.duration:g} s of data, the Q scan needs {span:g} s")
    n = int(round(span * rate))
    first = int(round((segment.centre - span / 2) * rate))
    first = min(max(first, 0), segment.data.size - n)  # slide the span inside the data near its edges
    spectrum = np.fft.rfft(whiten(segment.data, rate)[first:first + n])
    start = first / rate - segment.centre
    tiling = q_tiling(tuple(qrange), tuple(frange), n / rate, rate)
    best: QPlane | None = None
    for q, groups in tiling.planes:
        energies = tuple(g.energies(spectrum) for g in groups)
        peak = (-1.0, 0.0, 0.0)
        for group, energy in zip(groups, energies, strict=True):
            times = start + np.arange(group.ntiles) * (n / rate / group.ntiles)
            inside = np.flatnonzero(np.abs(times) <= search / 2)
            if inside.size:
                row, col = np.unravel_index(np.argmax(energy[:, inside]), (energy.shape[0], inside.size))
                if energy[row, inside[col]] > peak[0]:
                    peak = (float(energy[row, inside[col]]), float(times[inside[col]]),
                            float(group.frequencies[row]))
        if best is None or peak[0] > best.peak_energy:
            best = QPlane(q, tiling.frange, groups, energies, start, n / rate, peak[1], peak[2], peak[0])
    assert best is not None  # q_tiling always yields at least one plane
    return best


# -- rendering ----------------------------------------------------------------------------------------

class _Canvas:
    """A Gravity-Spy-style figure whose frame (axes, ticks, labels, title, colour bar) matplotlib draws
    once per (window, frequency band, title) and whose plot area is filled with colour-mapped pixels.

    Drawing text and encoding the PNG dominate the cost of an image; the frame repeats across candidates,
    so each process draws it once (no pyplot) and each image is a colour lookup, a paste and an encode.
    The frame is drawn on a transparent background and composited by its alpha: antialiased spines and
    text edges blend over the spectrogram exactly as matplotlib would draw them over an image. Figures
    are built and drawn in matplotlib's default style, so images do not change with the process's
    rcParams (importing gwpy, for one, turns grids on).
    """

    def __init__(self, size: tuple[int, int], cmap: str, vmax: float) -> None:
        with style.context("default"):
            self._build(size, cmap, vmax)

    def _build(self, size: tuple[int, int], cmap: str, vmax: float) -> None:
        width, height = size
        self.vmax = vmax
        self.figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="none")
        FigureCanvasAgg(self.figure)
        scale = min(width / GRAVITY_SPY_SIZE[0], height / GRAVITY_SPY_SIZE[1])  # Gravity Spy's font sizes
        self.axes = self.figure.add_axes((0.125, 0.1, 0.70, 0.8), facecolor="none")
        mappable = ScalarMappable(Normalize(0, vmax), colormaps[cmap])
        colorbar = self.figure.colorbar(mappable, cax=self.figure.add_axes((0.845, 0.1, 0.035, 0.8)))
        colorbar.set_label("Normalized energy", fontsize=15 * scale)
        colorbar.ax.tick_params(labelsize=12 * scale)
        self.axes.set_xlabel("Time (s)", fontsize=20 * scale, labelpad=0.1)
        self.axes.set_ylabel("Frequency (Hz)", fontsize=20 * scale)
        self.axes.tick_params(axis="x", labelsize=15 * scale)
        self.axes.tick_params(axis="y", labelsize=12 * scale)
        self.title = self.axes.set_title("", fontsize=20 * scale)
        self.lut = colormaps[cmap](np.linspace(0, 1, LUT_SIZE), bytes=True)[:, :3]
        box = self.axes.get_window_extent()  # display pixels, origin at the bottom left
        self.rows = slice(round(height - box.y1), round(height - box.y0))
        self.columns = slice(round(box.x0), round(box.x1))
        #: (rows, columns) of the plot area: the energy grid has one value per screen pixel
        self.pixels = (self.rows.stop - self.rows.start, self.columns.stop - self.columns.start)
        self._frames: dict[tuple[float, tuple[float, float], str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _frame(self, window: float, flim: tuple[float, float], title: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The frame over white, and over the plot area its alpha and alpha-weighted colour."""
        key = (window, flim, title)
        if key not in self._frames:
            with style.context("default"):  # new tick artists read rcParams too
                self._draw(window, flim, title)
            rgba = np.asarray(self.figure.canvas.buffer_rgba(), dtype=np.float32)
            alpha = rgba[..., 3:] / 255
            over_white = (rgba[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
            area = (self.rows, self.columns)
            self._frames[key] = (over_white, alpha[area], rgba[..., :3][area] * alpha[area])
        return self._frames[key]

    def _draw(self, window: float, flim: tuple[float, float], title: str) -> None:
        low, high = math.log2(flim[0]), math.log2(flim[1])
        self.axes.set_xlim(-window / 2, window / 2)
        self.axes.set_ylim(low, high)
        ticks = np.linspace(-window / 2, window / 2, 5)
        self.axes.set_xticks(ticks, [f"{t:g}" for t in ticks])
        # a linear axis in log2(frequency) with ticks at powers of two looks like Gravity Spy's log2 axis,
        # and on it the pixel grid is regular
        powers = np.arange(math.ceil(low), math.floor(high) + 1)
        self.axes.set_yticks(powers, [f"{2.0 ** p:g}" for p in powers])
        self.title.set_text(title)
        self.figure.canvas.draw()

    def save(self, energy: np.ndarray, window: float, flim: tuple[float, float], title: str, path: Path) -> None:
        """Write ``energy`` (lowest frequency first, ``pixels`` in shape) framed as a PNG at ``path``."""
        over_white, alpha, weighted = self._frame(window, flim, title)
        # matplotlib's colormap lookup: index floor(x * N) of the normalised value, clipped to the table
        index = np.clip((energy[::-1] * (LUT_SIZE / self.vmax)).astype(np.int64), 0, LUT_SIZE - 1)
        image = over_white.copy()
        image[self.rows, self.columns] = (weighted + self.lut[index] * (1 - alpha) + 0.5).astype(np.uint8)
        Image.fromarray(image).save(path, format="png", compress_level=PNG_COMPRESSION)


@lru_cache(maxsize=4)
def _canvas(size: tuple[int, int], cmap: str, vmax: float) -> _Canvas:
    """The process's canvas for these settings (worker processes keep it across batches)."""
    return _Canvas(size, cmap, vmax)


def image_column(duration: float) -> str:
    """The render output column of one duration, e.g. ``image_0.5s``."""
    return f"image_{duration:g}s"


def file_stem(cid: str) -> str:
    """A file-name-safe, deterministic stem for a candidate id; ids that needed changing get a hash suffix
    so two ids never share a file (``a/b`` and ``a_b``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", cid).lstrip(".") or "_"
    if safe != cid:
        safe += "-" + hashlib.sha1(cid.encode()).hexdigest()[:8]
    return safe


def image_title(row: Mapping[str, Any]) -> str:
    """Gravity Spy's title: the detector's site, and the run when known (never the label)."""
    ifo = row.get("ifo")
    name = IFO_NAMES.get(ifo, ifo) if isinstance(ifo, str) else ""
    run = row.get("run")
    return f"{name} - {run}" if name and isinstance(run, str) and run else name


class MissingStrainError(LookupError):
    """Real candidates without recorded strain: rendering them from synthetic strain would show volunteers
    a made-up glitch instead of the event that happened."""

    def __init__(self, ids: Sequence[str], total: int) -> None:
        shown = ", ".join(repr(i) for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(
            f"no strain found for {len(ids)} of {total} candidates ({shown}); their Q-scans would be made up. "
            "Configure real strain: images/strain=gwosc (open data; images.strain.sample_rate=16384 for the full "
            "2048 Hz band), images/strain=files with images.strain.pattern='/data/{ifo}/*.gwf' or "
            "images.strain.cache=FILE, or images/strain=gwpy_get on a LIGO cluster; or images.allow_synthetic=true "
            "for a demo with synthetic glitches")
        self.ids = list(ids)


class QScanImages:
    """Renders Gravity-Spy-style Q-scan PNGs for candidates (``render``), in parallel over candidates.

    Strain for a candidate comes from the first source that has it: ``strain`` (e.g. ``GwoscStrain``,
    ``FileStrain`` or ``NpzStrain``), then a file named in the candidate's ``strain`` column (read around
    ``event_time``), then ``synthetic`` (series built from the candidate's features) but only where made-up
    strain is allowed: for made-up candidates (``data_loader`` is ``SyntheticData``, i.e. ``data=synthetic``)
    or with ``allow_synthetic``. Otherwise a batch with candidates lacking strain raises
    ``MissingStrainError`` before any image is written.
    """

    def __init__(self, durations: Sequence[float] = GRAVITY_SPY_DURATIONS,
                 frange: Sequence[float] = GRAVITY_SPY_FRANGE, qrange: Sequence[float] = GRAVITY_SPY_QRANGE,
                 size: Sequence[int] = GRAVITY_SPY_SIZE, cmap: str = "viridis", vmax: float = GRAVITY_SPY_VMAX,
                 search: float = 0.5, n_jobs: int = -1, progress: bool = True,
                 strain: RealStrainSource | None = None,
                 synthetic: SyntheticStrain | None = SyntheticStrain(), allow_synthetic: bool = False,
                 data_loader: str | None = None) -> None:
        self.durations = tuple(float(d) for d in durations)
        self.frange = (float(frange[0]), float(frange[1]))
        self.qrange = (float(qrange[0]), float(qrange[1]))
        self.size = (int(size[0]), int(size[1]))
        self.cmap = cmap
        self.vmax = float(vmax)
        self.search = float(search)
        self.n_jobs = n_jobs
        self.progress = progress
        self.sources: list[RealStrainSource] = [s for s in (strain, FileStrain()) if s is not None]
        self.made_up = data_loader == f"{SyntheticData.__module__}.{SyntheticData.__qualname__}"
        self.synthetic = synthetic if allow_synthetic or self.made_up else None

    @property
    def plot_area(self) -> tuple[slice, slice]:
        """Pixel rows (top first) and columns of the spectrogram inside each PNG."""
        canvas = _canvas(self.size, self.cmap, self.vmax)
        return canvas.rows, canvas.columns

    def plan(self, frame: pd.DataFrame) -> dict[str, int]:
        """Which source gives each candidate its strain (an index of ``sources``; ``len(sources)`` is
        synthetic), after each real source fetched what it holds; ``MissingStrainError`` when real strain is
        missing and synthetic is not allowed."""
        chosen: dict[str, int] = {}
        remaining = frame.index
        for number, source in enumerate(self.sources):
            if remaining.empty:
                break
            held = source.fetch(frame.loc[remaining])
            chosen.update(dict.fromkeys(held, number))
            remaining = remaining.difference(held, sort=False)
        if not remaining.empty:
            if self.synthetic is None:
                raise MissingStrainError(list(remaining), len(frame))
            log.log(logging.INFO if self.made_up else logging.WARNING,
                    "%d of %d candidates have no recorded strain: synthetic Q-scans", len(remaining), len(frame))
            chosen.update(dict.fromkeys(remaining, len(self.sources)))
        return chosen

    def strain(self, cid: str, row: Mapping[str, Any], source: int | None = None) -> StrainSegment:
        """The strain around candidate ``cid`` from source number ``source`` of ``plan``, or else from the
        first source that has it."""
        real = self.sources if source is None else self.sources[source:source + 1]
        for each in real:
            segment = each.segment(cid, row)
            if segment is not None:
                return segment
        if self.synthetic is None:
            raise MissingStrainError([cid], 1)
        return replace(self.synthetic.segment(cid, row), source="synthetic")

    def transform(self, cid: str, row: Mapping[str, Any], segment: StrainSegment | None = None) -> QPlane:
        """The candidate's Q plane over the span the longest window needs (plus margins)."""
        segment = segment or self.strain(cid, row)
        span = min(segment.duration, max(self.durations) + 2 * MARGIN)
        plane = q_transform(segment, span=span, qrange=self.qrange, frange=self.frange, search=self.search)
        log.debug("%s: %s; Q=%.3g, peak %.3g at %+.3f s, %.4g Hz", cid, segment.origin, plane.q,
                  plane.peak_energy, plane.peak_time, plane.peak_frequency)
        return plane

    def render_one(self, cid: str, row: Mapping[str, Any], out_dir: Path, source: int | None = None) -> list[Any]:
        """Write the candidate's PNGs (one per duration); their names in ``durations`` order, then the
        strain's origin (``STRAIN_COLUMNS``)."""
        try:
            segment = self.strain(cid, row, source)
            plane = self.transform(cid, row, segment)
        except Exception as err:  # a batch's error must say which candidate it came from
            raise RuntimeError(f"Q-scan of candidate {cid!r}: {err}") from err
        canvas = _canvas(self.size, self.cmap, self.vmax)
        nrows, ncols = canvas.pixels
        edges = np.geomspace(*plane.frange, nrows + 1)
        frequencies = np.sqrt(edges[:-1] * edges[1:])
        names: list[Any] = []
        for window in self.durations:
            times = (np.arange(ncols) + 0.5) / ncols * window - window / 2
            name = f"{file_stem(cid)}_{window:g}s.png"
            canvas.save(plane.grid(times, frequencies), window, plane.frange, image_title(row),
                        out_dir / name)
            names.append(name)
        return [*names, segment.source, segment.file, segment.sample_rate]

    def render(self, frame: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
        """PNGs for every candidate of ``frame`` in ``out_dir``; returns, indexed by candidate id, the file
        names (relative to ``out_dir``), one ``image_<duration>s`` column per duration, and the strain's
        origin: ``strain_source`` (gwosc, file, gwpy-get, npz, synthetic), ``strain_file``, ``sample_rate``.

        Strain is found for the whole batch first: missing real strain raises before anything is written.
        """
        ids = [str(i) for i in frame.index]
        if len(set(ids)) != len(ids):
            raise ValueError("candidate ids must be unique to name their images")
        frame = frame.set_axis(pd.Index(ids, name="id"))
        plan = self.plan(frame)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = frame.to_dict("records")
        jobs = (delayed(self.render_one)(cid, row, out_dir, plan[cid]) for cid, row in zip(ids, rows, strict=True))
        results = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)
        names = list(tqdm(results, total=len(ids), desc="Q-scans", unit="candidate", disable=not self.progress))
        log.info("%d Q-scan images of %d candidates written to %s", len(ids) * len(self.durations), len(ids),
                 out_dir)
        columns = [*(image_column(d) for d in self.durations), *STRAIN_COLUMNS]
        result = pd.DataFrame(names, index=pd.Index(ids, name="id"), columns=columns)
        return result.astype({"sample_rate": "float64"})
