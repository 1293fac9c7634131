"""Gravity-Spy-style Q-scan images of glitch candidates (``QScanImages``).

Volunteers classify what they see, so the images follow Gravity Spy's: the Omega/gwpy multi-Q transform
of whitened strain (Q 4–64, 10–2048 Hz), the loudest Q plane within ±0.25 s of the event, shown over
0.5, 1, 2 and 4 s windows centred on it, log-frequency axis, viridis normalised energy from 0 to 25.5.

The transform gives what gwpy's ``TimeSeries.q_transform`` gives (``bench_qscan.py --fidelity`` and the
tests compare the two on the same grid): gwpy whitens the whole segment (its own ``asd`` and ``whiten``), the
tiling, tile windows and loudest-plane rule are gwpy's, and the images are interpolated with gwpy's cubic
splines. It is faster because it whitens and transforms each candidate once for all four durations, in
single precision, transforms rows of equal length with one batched inverse FFT, fits the splines only
around the times shown, and evaluates them only on the image's own pixel grid. Each worker process has
matplotlib (no pyplot) draw the Gravity Spy frame once per window and title, and pastes each image's
colour-mapped pixels into it, instead of building and drawing a figure per image.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
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
from scipy.fft import ifft
from scipy.interpolate import make_interp_spline
from tqdm.auto import tqdm

from glitchrun.data.loaders import SyntheticData
from glitchrun.errors import portable
from glitchrun.images.strain import (
    FileStrain,
    RealStrainSource,
    StrainSegment,
    StrainUnreachable,
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
#: whitening as gwpy's ``q_transform`` does it by default: an ASD from 2 s Hann segments (its length for
#: rates of 1024 Hz and more) overlapping by half, median averaged, turned into a 2 s FIR filter
FFTLENGTH = 2.0
FDURATION = 2.0
#: tile energies kept on each side of the images' times for their cubic splines: a not-a-knot spline's
#: dependence on a sample decays by 2 - √3 per sample, so 16 more change it by < 1e-9 of the energy
SPLINE_PAD = 16
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
        """Tile energies (rows × ntiles), each row normalised by its median as gwpy's ``norm='median'``.

        In single precision: gwpy returns float32 energies too, and the FFTs take a quarter less time.
        """
        rows = np.zeros((self.frequencies.size, self.ntiles), dtype=np.complex64)
        rows.ravel()[self.flat] = spectrum[self.bins] * self.window
        tiles = ifft(rows, axis=1, overwrite_x=True)
        energy = tiles.real ** 2 + tiles.imag ** 2
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
            # energies as gwpy's padded-and-shifted layout, which only differs by a phase ramp. Like gwpy
            # (``QTile.get_data_indices``, Omega's 1-based indexing carried over), the window reads the
            # spectrum one bin above the row's frequency
            flat.append(row * n + offsets % n)
            bins.append(np.round(offsets + 1 + f * duration).astype(int))
            window.append((1 - (offsets / duration * qprime / f) ** 2) ** 2)
        groups.append(_RowGroup(freqs, int(n), np.concatenate(flat), np.concatenate(bins),
                                np.concatenate(window)))
    return groups


@dataclass(frozen=True)
class QTiling:
    """The Q planes ``(q, row groups)`` tiling ``frange``; its top is capped where the lowest plane's
    tiles would cross Nyquist (as gwpy does, with a warning): ~1291 Hz for 4096 Hz data."""

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
    band = (float(frange[0]), float(min(frange[1], sample_rate / 2 / (1 + math.sqrt(11) / qs[0]))))
    return QTiling(band, tuple((float(q), tuple(_row_groups(q, _row_frequencies(q, *band, duration), duration)))
                               for q in qs))


def whiten(data: np.ndarray, sample_rate: float) -> np.ndarray:
    """``data`` whitened by gwpy exactly as its ``TimeSeries.q_transform`` does by default (``asd`` then
    ``whiten``: a Hann-windowed FIR filter from the inverse ASD, the data's ends tapered), so the energies,
    and the Q plane picked from them, are gwpy's."""
    from gwpy.timeseries import TimeSeries  # gwpy is slow to import; only Q scans and strain reads need it

    series = TimeSeries(data, sample_rate=sample_rate)
    asd = series.asd(FFTLENGTH, FFTLENGTH / 2, window="hann", method="median")
    return series.whiten(asd=asd, fduration=FDURATION).value


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
    #: the times the images show: the rows' splines are fitted around them only (``SPLINE_PAD``)
    shown: tuple[float, float] = (-math.inf, math.inf)

    @property
    def frequencies(self) -> np.ndarray:
        return np.concatenate([g.frequencies for g in self.groups])

    @cached_property
    def _time_splines(self) -> tuple[Any, ...]:
        """Per row group, the cubic splines through its rows' tile energies in time (gwpy's
        ``InterpolatedUnivariateSpline``: not-a-knot, like ``make_interp_spline``), over ``shown``."""
        splines = []
        for group, energy in zip(self.groups, self.energies, strict=True):
            step = self.span / group.ntiles
            first = max(0, math.floor((self.shown[0] - self.start) / step) - SPLINE_PAD)
            stop = min(group.ntiles, math.ceil((self.shown[1] - self.start) / step) + 1 + SPLINE_PAD)
            times = self.start + np.arange(first, stop) * step
            splines.append(make_interp_spline(times, energy[:, first:stop], k=3, axis=1))
        return tuple(splines)

    def grid(self, times: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
        """Normalised energy (len(frequencies) × len(times), ``times`` within ``shown``) as gwpy's
        ``QGram.interpolate`` computes it: each row's cubic spline in time, then at each time a cubic spline
        across the rows in (linear) frequency, held at the top and bottom rows' values outside them."""
        rows = np.concatenate([spline(times) for spline in self._time_splines])
        row_f = self.frequencies
        if row_f.size == 1:
            return np.repeat(rows, frequencies.size, axis=0)
        across = make_interp_spline(row_f, rows, k=min(3, row_f.size - 1), axis=0)
        return across(np.clip(frequencies, row_f[0], row_f[-1]))


def q_transform(segment: StrainSegment, *, qrange: tuple[float, float] = GRAVITY_SPY_QRANGE,
                frange: tuple[float, float] = GRAVITY_SPY_FRANGE, search: float = 0.5,
                shown: tuple[float, float] = (-math.inf, math.inf)) -> QPlane:
    """Whiten the whole ``segment`` and return the Q plane whose loudest tile within ``±search/2`` of the
    glitch is the loudest of all planes, as gwpy's ``q_transform(gps=glitch, search=search)`` does. Images
    over ``shown`` (seconds from the glitch) can then be drawn from the plane (``QPlane.grid``)."""
    rate = segment.sample_rate
    spectrum = np.fft.rfft(whiten(segment.data, rate))
    start, span = -segment.centre, segment.data.size / rate
    tiling = q_tiling(tuple(qrange), tuple(frange), span, rate)
    best: QPlane | None = None
    for q, groups in tiling.planes:
        energies = tuple(g.energies(spectrum) for g in groups)
        peak = (0.0, 0.0, 0.0)
        for group, energy in zip(groups, energies, strict=True):
            # gwpy's ``crop(-search/2, search/2)``: from the tile at or before the start to the one before the end
            step = span / group.ntiles
            first, stop = (min(max(math.floor((edge - start) / step), 0), group.ntiles)
                           for edge in (-search / 2, search / 2))
            if stop > first:
                row, col = np.unravel_index(np.argmax(energy[:, first:stop]), (energy.shape[0], stop - first))
                if energy[row, first + col] > peak[0]:
                    peak = (float(energy[row, first + col]), start + (first + col) * step,
                            float(group.frequencies[row]))
        if best is None or peak[0] > best.peak_energy:
            best = QPlane(q, tiling.frange, groups, energies, start, span, peak[1], peak[2], peak[0], shown)
    assert best is not None  # q_tiling always yields at least one plane
    return best


# -- rendering ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Frame:
    """A drawn frame: the whole image over white, and the few plot-area pixels it covers (``drawn``, spines
    and ticks) with their alpha and alpha-weighted colour, blended over the spectrogram there only."""

    over_white: np.ndarray
    drawn: tuple[np.ndarray, np.ndarray]
    alpha: np.ndarray
    weighted: np.ndarray


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
        self._frames: dict[tuple[float, tuple[float, float], str], _Frame] = {}

    def _frame(self, window: float, flim: tuple[float, float], title: str) -> _Frame:
        """The frame over white, and where it covers the plot area, its alpha and alpha-weighted colour."""
        key = (window, flim, title)
        if key not in self._frames:
            with style.context("default"):  # new tick artists read rcParams too
                self._draw(window, flim, title)
            rgba = np.asarray(self.figure.canvas.buffer_rgba(), dtype=np.float32)
            alpha = rgba[..., 3:] / 255
            over_white = (rgba[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
            area = (self.rows, self.columns)
            drawn = np.nonzero(alpha[area][..., 0])
            self._frames[key] = _Frame(over_white, drawn, alpha[area][drawn], (rgba[..., :3] * alpha)[area][drawn])
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
        frame = self._frame(window, flim, title)
        # matplotlib's colormap lookup: index floor(x * N) of the normalised value, clipped to the table
        index = np.clip((energy[::-1] * (LUT_SIZE / self.vmax)).astype(np.int64), 0, LUT_SIZE - 1)
        area = self.lut[index]
        area[frame.drawn] = (frame.weighted + area[frame.drawn] * (1 - frame.alpha) + 0.5).astype(np.uint8)
        image = frame.over_white.copy()
        image[self.rows, self.columns] = area
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


#: how to configure each kind of real strain, for messages
STRAIN_CHOICES = {
    "gwosc": "images/strain=gwosc (open data; images.strain.sample_rate=16384 for the full 2048 Hz band)",
    "files": "images/strain=files with images.strain.pattern='/data/{ifo}/*.gwf' or images.strain.cache=FILE",
    "gwpy_get": "images/strain=gwpy_get on a LIGO cluster",
}


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The warnings met inside, as text once the block ends: Python's, and astropy's (gwpy's units), which
    astropy's own logger would print on stderr."""
    from astropy import log as astropy_log  # imported with gwpy anyway; importing it first keeps its handler ours

    kept = logging.handlers.BufferingHandler(capacity=1 << 20)
    saved = astropy_log.handlers[:], astropy_log.propagate
    astropy_log.handlers, astropy_log.propagate = [kept], False
    met: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield met
    finally:
        astropy_log.handlers, astropy_log.propagate = saved
    met += [warnings.formatwarning(w.message, w.category, w.filename, w.lineno, None).strip() for w in caught]
    met += [f"astropy: {record.getMessage()}" for record in kept.buffer]


class MissingStrainError(LookupError):
    """Real candidates without recorded strain: rendering them from synthetic strain would show volunteers
    a made-up glitch instead of the event that happened. ``tried`` names the configured source (a key of
    ``STRAIN_CHOICES``), which the advice then leaves out."""

    def __init__(self, ids: Sequence[str], total: int, tried: str | None = None) -> None:
        shown = ", ".join(repr(i) for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        where = f"images/strain={tried} has none for them. " if tried else ""
        others = " or ".join(choice for name, choice in STRAIN_CHOICES.items() if name != tried)
        super().__init__(
            f"no strain found for {len(ids)} of {total} candidates ({shown}); their Q-scans would be made up. "
            f"{where}Configure {'other ' if tried else ''}real strain: {others}; or images.allow_synthetic=true "
            "for a demo with synthetic glitches")
        self.ids, self.total, self.tried = list(ids), total, tried

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from its arguments when it crosses from a worker process
        return type(self), (self.ids, self.total, self.tried), self.__dict__


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
        if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
            raise ValueError(f"images.n_jobs must be a number of worker processes (-1 = every core, -2 = all but "
                             f"one), not {n_jobs!r}")
        self.n_jobs = n_jobs
        self.progress = progress
        self.tried = getattr(strain, "OPTION", None)
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
            try:
                held = source.fetch(frame.loc[remaining])
            except StrainUnreachable as err:  # offline: a demo may go on with synthetic strain
                if self.synthetic is None:
                    raise
                log.warning("%s: synthetic Q-scans (images.allow_synthetic)", err.summary)
                held = pd.Index([], name="id")
            chosen.update(dict.fromkeys(held, number))
            remaining = remaining.difference(held, sort=False)
        if not remaining.empty:
            if self.synthetic is None:
                raise MissingStrainError(list(remaining), len(frame), self.tried)
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
            raise MissingStrainError([cid], 1, self.tried)
        return replace(self.synthetic.segment(cid, row), source="synthetic")

    def transform(self, cid: str, row: Mapping[str, Any], segment: StrainSegment | None = None) -> QPlane:
        """The candidate's Q plane, from all the strain around it (as gwpy transforms all it is given)."""
        segment = segment or self.strain(cid, row)
        longest = max(self.durations)
        if segment.duration < longest:
            raise ValueError(f"{segment.origin}: {segment.duration:g} s of data, the Q scan needs {longest:g} s")
        plane = q_transform(segment, qrange=self.qrange, frange=self.frange, search=self.search,
                            shown=(-longest / 2, longest / 2))
        log.debug("%s: %s; Q=%.3g, peak %.3g at %+.3f s, %.4g Hz", cid, segment.origin, plane.q,
                  plane.peak_energy, plane.peak_time, plane.peak_frequency)
        return plane

    def render_one(self, cid: str, row: Mapping[str, Any], out_dir: Path,
                   source: int | None = None) -> tuple[list[Any], list[str]]:
        """Write the candidate's PNGs (one per duration); their names in ``durations`` order, then the
        strain's origin (``STRAIN_COLUMNS``); and the warnings met on the way, for the caller to log (a worker
        process would print them on the terminal)."""
        with collected_warnings() as met:
            drawn = self.draw(cid, row, out_dir, source)
        return drawn, met

    def draw(self, cid: str, row: Mapping[str, Any], out_dir: Path, source: int | None = None) -> list[Any]:
        try:
            segment = self.strain(cid, row, source)
            plane = self.transform(cid, row, segment)
        except Exception as err:  # say which candidate; keep its type, message and origin across the process trip
            ready = portable(err, f"while drawing the Q-scan of candidate {cid!r}")
            if ready is err:
                raise
            raise ready from err
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
        done = list(tqdm(results, total=len(ids), desc="Q-scans", unit="candidate",
                         disable=None if self.progress else True))
        names = [drawn for drawn, _ in done]
        for text in (text for _, met in done for text in met):
            logging.getLogger("py.warnings").warning("%s", text)  # where warnings.warn sends them (the run's log)
        log.info("%d Q-scan images of %d candidates written to %s", len(ids) * len(self.durations), len(ids),
                 out_dir)
        columns = [*(image_column(d) for d in self.durations), *STRAIN_COLUMNS]
        result = pd.DataFrame(names, index=pd.Index(ids, name="id"), columns=columns)
        return result.astype({"sample_rate": "float64"})
