"""Strain around each glitch candidate, for the Q-scan images.

Every source answers the same question, "the time series around candidate ``id``" (``segment``), so the
Q-scan code never needs to know where data came from; real sources also answer for a whole batch first
(``fetch``: which candidates they hold, fetching what they need once, e.g. each GWOSC file once for all
its candidates), so a batch missing real strain stops before anything is rendered or uploaded.

- ``GwoscStrain``: LIGO/Virgo open data located through ``gwosc`` and read with gwpy, files kept in a cache.
- ``FileStrain``: frame or HDF5 files read with gwpy around each candidate's ``event_time``: one file, a
  file named per candidate, or a set of files found by a glob pattern or listed in a cache file.
- ``GwpyGetStrain``: gwpy's ``TimeSeries.get`` (gwdatafind frames or NDS2) for users on LIGO clusters.
- ``NpzStrain``: real segments stored as arrays (like the shared O3 examples); it also lists its segments
  as canonical candidate rows, so the file doubles as a small real dataset.
- ``SyntheticStrain``: detector-like coloured noise with a sine-Gaussian carrying the candidate's peak
  frequency, duration, bandwidth and SNR: for made-up candidates, never silently for real events.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import h5py
import numpy as np
import pandas as pd

from glitchrun.data.loaders import canonical, check_labels_as, existing_path, resolve_path, use_labels_as
from glitchrun.errors import network_reason
from glitchrun.images.download import fetch_file, fetch_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StrainSegment:
    """A stretch of (unwhitened) strain with the glitch ``centre`` seconds after its first sample.

    ``source`` (``gwosc``, ``file``, ``gwpy-get``, ``npz``, ``synthetic``) and ``file`` (the data file(s)
    read, blank for synthetic) are recorded with each subject; ``origin`` is the same for log lines.
    """

    data: np.ndarray
    sample_rate: float
    centre: float
    origin: str
    source: str = ""
    file: str = ""

    def __post_init__(self) -> None:
        """Refuse what no Q scan can be drawn from, naming where it came from (the reader raised nothing)."""
        if not (math.isfinite(self.sample_rate) and self.sample_rate > 0):
            raise ValueError(f"{self.origin}: the sample rate is {self.sample_rate:g} Hz, not a positive number")
        if self.data.ndim != 1 or self.data.size == 0:
            raise ValueError(f"{self.origin}: no strain samples (an array of shape {self.data.shape})")
        bad = np.count_nonzero(~np.isfinite(self.data))
        if bad:
            raise ValueError(f"{self.origin}: {bad} of {self.data.size} strain samples are NaN or infinite "
                             "(no data at those times)")

    @property
    def duration(self) -> float:
        return self.data.size / self.sample_rate


class StrainSource(Protocol):
    """Anything that can give the strain around a candidate, or ``None`` when it holds none for it."""

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None: ...


class RealStrainSource(StrainSource, Protocol):
    """A source of recorded strain: ``fetch`` gets what a batch needs up front and says which candidates
    (ids of ``frame``) it holds, so ``segment`` then reads local data only."""

    def fetch(self, frame: pd.DataFrame) -> pd.Index: ...


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


def event_span(cid: str, row: Mapping[str, Any]) -> tuple[str, float]:
    """The candidate's detector and GPS event time; ``ValueError`` naming what is missing."""
    ifo, event_time = row.get("ifo"), number(row.get("event_time"))
    if not isinstance(ifo, str) or not ifo or event_time is None:
        raise ValueError(f"candidate {cid!r} needs an ifo and an event_time to find its strain")
    return ifo, event_time


def write_gwosc_hdf5(path: Path, data: np.ndarray, ifo: str, gps_start: int, sample_rate: int,
                     compression: str | None = None) -> None:
    """A GWOSC-format strain file (the datasets and attributes gwpy's ``hdf5.gwosc`` reader uses)."""
    with h5py.File(path, "w") as h5f:
        strain = h5f.create_dataset("strain/Strain", data=data, compression=compression)
        strain.attrs.update({"Xstart": gps_start, "Xspacing": 1.0 / sample_rate, "Xunits": "second",
                             "Yunits": "", "Npoints": data.size})
        h5f["strain/GWOSCmeta"] = np.bytes_(f"GWOSC-{sample_rate // 1024}KHZ_R1_STRAIN")
        h5f["meta/Detector"] = np.bytes_(ifo)
        h5f["meta/GPSstart"] = gps_start
        h5f["meta/Duration"] = data.size // sample_rate


def is_gwosc_hdf5(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file in GWOSC's layout (``strain/Strain``), which gwpy reads only when told
    its format is ``hdf5.gwosc``; ``ValueError`` when its sample spacing gives no sample rate."""
    if Path(path).suffix.lower() not in (".hdf5", ".h5", ".hdf"):
        return False
    with h5py.File(path, "r") as h5f:
        if "strain/Strain" not in h5f:
            return False
        spacing = number(h5f["strain/Strain"].attrs.get("Xspacing"))
    if spacing is None or spacing <= 0:
        raise ValueError(f"its strain/Strain has Xspacing {spacing} s, so no sample rate")
    return True


def read_strain(paths: Sequence[str | Path], event_time: float, pad: float, *, channel: str | None = None,
                format: str | None = None, source: str, name: str) -> StrainSegment:
    """``event_time ± pad`` from ``paths`` (one file or contiguous ones) read by gwpy's ``TimeSeries.read``;
    GWOSC HDF5 files need no ``format`` or ``channel``. A file that does not hold the data (unreadable, too
    short, no such channel) raises ``ValueError`` naming the files and the span. ``name`` is what subjects
    record as their strain's file (never a local path); log lines name the paths."""
    from gwpy.timeseries import TimeSeries  # gwpy is slow to import; only reads of recorded data need it

    files = [str(p) for p in paths]
    span = f"GPS {event_time - pad:.3f}-{event_time + pad:.3f}"
    try:
        if format is None and channel is None and all(is_gwosc_hdf5(f) for f in files):
            format = "hdf5.gwosc"
        args = [] if channel is None else [channel]
        kwargs = {} if format is None else {"format": format}
        series = TimeSeries.read(files if len(files) > 1 else files[0], *args, start=event_time - pad,
                                 end=event_time + pad, **kwargs)
    except (OSError, ValueError, LookupError, RuntimeError, ArithmeticError) as err:
        # h5py, gwpy and the frame libraries say what is wrong with the file; glitchrun says which one
        raise ValueError(f"cannot read {channel or 'the strain'} at {span} from {' '.join(files)}: "
                         f"{' '.join(str(err).split()) or type(err).__name__}") from err
    return StrainSegment(np.asarray(series.value, dtype=np.float64), float(series.sample_rate.to("Hz").value),
                         float(event_time - series.t0.value), origin=f"{source} {' '.join(files)}", source=source,
                         file=name)


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``existing_path(path)`` that must be a file, not a directory."""
    resolved = existing_path(path, what)
    if not resolved.is_file():
        raise ValueError(f"{what}: {path} is a directory, not a file")
    return resolved


def _held(frame: pd.DataFrame, holds: Callable[[str, Mapping[str, Any]], bool]) -> pd.Index:
    ids = [str(cid) for cid, row in zip(frame.index, frame.to_dict("records"), strict=True) if holds(str(cid), row)]
    return pd.Index(ids, name="id")


# -- real strain: arrays in an npz --------------------------------------------------------------------

@lru_cache(maxsize=4)
def _load_npz(path: str) -> dict[str, np.ndarray]:
    """The npz's arrays, read once per process (each worker reads the file itself: nothing big is pickled);
    ``ValueError`` naming the file when it is not a readable npz of strain segments."""
    try:
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"images.strain.path: {path} is not a readable npz ({type(err).__name__}: {err})") from err
    for name in ("strain", "sample_rate"):
        if name not in arrays:
            raise ValueError(f"images.strain.path: {path} has no array {name!r} (it has {sorted(arrays)})")
    rate = number(arrays["sample_rate"]) if arrays["sample_rate"].size == 1 else None
    if rate is None or rate <= 0 or arrays["strain"].ndim != 2:
        raise ValueError(f"images.strain.path: {path} needs a 2-d 'strain' (segments x samples) and a positive "
                         f"'sample_rate', not shapes {arrays['strain'].shape} and a rate of {arrays['sample_rate']}")
    return arrays


class NpzStrain:
    """Real strain segments from an npz with arrays ``strain`` (n × samples), ``sample_rate`` and, per
    segment, ``label``, ``ifo``, ``snr`` (and optionally ``run``), like ``o3_glitch_strain_examples.npz``.

    Segment ``i`` is candidate ``<prefix>-<i>``; its glitch sits at ``centre`` seconds from the segment
    start (``None``: the middle, where the shared examples put it).
    """

    #: the images/strain option that configures it
    OPTION = "npz"

    def __init__(self, path: str | Path, prefix: str = "o3strain", centre: float | None = None) -> None:
        self.path = str(existing_file(path, "images.strain.path (npz of strain segments)"))
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

    def fetch(self, frame: pd.DataFrame) -> pd.Index:
        return frame.index.astype(str).intersection(pd.Index(self.ids()))

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        prefix, _, index = cid.rpartition("-")
        arrays = self._arrays()
        if prefix != self.prefix or not index.isdigit() or int(index) >= len(arrays["strain"]):
            return None
        data = arrays["strain"][int(index)].astype(np.float64)
        rate = float(arrays["sample_rate"])
        centre = self.centre if self.centre is not None else data.size / rate / 2
        name = f"{Path(self.path).name}[{index}]"
        return StrainSegment(data, rate, centre, origin=f"npz {name}", source="npz", file=name)


# -- real strain: frame / HDF5 files read by gwpy -----------------------------------------------------

class FileStrain:
    """Strain read with gwpy's ``TimeSeries.read`` from ``event_time - pad`` to ``event_time + pad``.

    Which file: the candidate's ``column`` value when it has one (a per-candidate file); else ``path`` (one
    file); else the files matching the glob ``pattern`` or listed in the ``cache`` file (one path or LAL
    cache entry a line), whose T050017 names (``H-H1_GWOSC_O3a_4KHZ_R1-1238163456-4096.hdf5``) say which
    detector and GPS span each holds; ``{ifo}`` in ``pattern`` is replaced by the candidate's detector.
    ``channel`` is the channel (frames) or dataset (HDF5) name, ``None`` where gwpy needs none (GWOSC HDF5).
    """

    #: the images/strain option that configures it
    OPTION = "files"

    def __init__(self, path: str | None = None, channel: str | None = None, column: str = "strain",
                 pad: float = 8.0, format: str | None = None, pattern: str | None = None,
                 cache: str | None = None) -> None:
        self.path = None if path is None else str(existing_file(path, "images.strain.path"))
        self.channel = channel
        self.column = column
        self.pad = float(pad)
        self.format = format
        self.pattern = None if pattern is None else str(resolve_path(pattern))
        self.cache = None if cache is None else str(existing_file(cache, "images.strain.cache"))

    @cached_property
    def _listed(self) -> list[str]:
        from gwpy.io.cache import read_cache

        return list(read_cache(self.cache)) if self.cache else []

    def files(self, ifo: str, start: float, end: float) -> list[str]:
        """The pattern's or cache's files of ``ifo`` that overlap ``[start, end)``, in time order; ``[]``
        unless together they cover it."""
        from gwpy.io.cache import file_segment

        if self.pattern is not None:
            found = glob.glob(self.pattern.replace("{ifo}", ifo))
            if "{ifo}" not in self.pattern:
                found = [f for f in found if ifo[0] in Path(f).name.split("-")[0]]
        else:
            found = [f for f in self._listed if ifo[0] in Path(f).name.split("-")[0]]
        spans = []
        for name in found:
            try:
                segment = file_segment(name)
            except ValueError:  # not a T050017 name: its span is unknown
                continue
            if segment[0] < end and segment[1] > start:
                spans.append((float(segment[0]), float(segment[1]), name))
        spans.sort()
        reached = start
        for first, last, _ in spans:
            if first > reached:
                return []
            reached = max(reached, last)
        return [name for *_, name in spans] if reached >= end else []

    def _where(self, cid: str, row: Mapping[str, Any]) -> list[str]:
        named = row.get(self.column)
        if isinstance(named, (str, Path)) and str(named):
            return [str(named)]
        if self.path is not None:
            return [self.path]
        if self.pattern is None and self.cache is None:
            return []
        ifo, event_time = event_span(cid, row)
        return self.files(ifo, event_time - self.pad, event_time + self.pad)

    def fetch(self, frame: pd.DataFrame) -> pd.Index:
        def holds(cid: str, row: Mapping[str, Any]) -> bool:
            try:
                return bool(self._where(cid, row))
            except ValueError:
                return False

        return _held(frame, holds)

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        files = self._where(cid, row)
        if not files:
            return None
        event_time = number(row.get("event_time"))
        if event_time is None:  # recorded data exist: an image of made-up data would mislead volunteers
            raise ValueError(f"candidate {cid!r} has strain in {files[0]} but no event_time to read it at")
        # subjects record the files' names: a local path would leave this machine in every export
        return read_strain(files, event_time, self.pad, channel=self.channel, format=self.format, source="file",
                           name=" ".join(Path(f).name for f in files))


# -- real strain: GWOSC open data ---------------------------------------------------------------------

class StrainUnreachable(ConnectionError):
    """The strain's server cannot be reached at all: said once, with what to do offline, rather than once
    per candidate."""

    def __init__(self, host: str, reason: str, candidates: int) -> None:
        self.host, self.reason, self.candidates = host, reason, candidates
        self.summary = f"cannot reach GWOSC at {host} to locate the strain of {candidates} candidates ({reason[:200]})"
        super().__init__(
            f"{self.summary}; check the network (images.strain.host for a mirror), or offline: images/strain=files "
            "reads strain files you have, and '~images/strain' images.allow_synthetic=true draws synthetic "
            "Q-scans (a demo)")

    def __reduce__(self) -> tuple[Any, ...]:  # rebuilt from its arguments when it crosses from a worker process
        return type(self), (self.host, self.reason, self.candidates), self.__dict__


def warn_failures(what: str, failures: Mapping[str, BaseException], total: int, unit: str = "candidates") -> None:
    """One warning for the items (candidates, files) a source could not get, with the first one's reason;
    each item's reason at debug level."""
    if not failures:
        return
    first, err = next(iter(failures.items()))
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    log.warning("%s %d of %d %s (%r%s): %s", what, len(failures), total, unit, first, more,
                " ".join(str(err).split()))
    for item, reason in failures.items():
        log.debug("%s %r: %s", what, item, reason)


class GwoscStrain:
    """LIGO/Virgo/KAGRA open data from GWOSC around each candidate's ``ifo`` and ``event_time``.

    ``gwosc`` locates the files (the v2 API that gwpy's ``fetch_open_data`` uses; ``host`` for a mirror
    or a stand-in, default ``$GWOSC_SERVER_URL`` or gwosc.org); ``fetch`` downloads each file a batch
    needs once, ``workers`` at a time, into ``cache_dir`` (resumed after a broken transfer, never used
    half), and gwpy reads ``event_time ± pad`` from the cached files. ``sample_rate`` 16384 gives images
    up to 2048 Hz, Gravity Spy's full band; 4096 Hz data reach about 1290 Hz.
    """

    #: the images/strain option that configures it
    OPTION = "gwosc"

    def __init__(self, sample_rate: int = 4096, cache_dir: str = "~/.cache/glitchrun/gwosc", host: str | None = None,
                 pad: float = 8.0, workers: int = 4, retries: int = 3, timeout: float = 60.0,
                 progress: bool = True) -> None:
        if sample_rate not in (4096, 16384):
            raise ValueError(f"GWOSC strain comes at 4096 or 16384 Hz, not {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.cache_dir = resolve_path(cache_dir)
        self.host = host
        self.pad = float(pad)
        self.workers = int(workers)
        self.retries = int(retries)
        self.timeout = float(timeout)
        self.progress = progress
        #: each fetched candidate's file URLs, so workers read the cache without asking GWOSC again
        self.located: dict[str, tuple[str, ...]] = {}

    def urls(self, cid: str, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The GWOSC files holding the candidate's ``event_time ± pad`` (``ValueError`` if none do)."""
        from gwosc.api import DEFAULT_URL
        from gwosc.locate import get_urls
        from gwosc.utils import url_segment

        ifo, event_time = event_span(cid, row)
        start, end = math.floor(event_time - self.pad), math.ceil(event_time + self.pad)
        urls = get_urls(ifo, start, end, sample_rate=self.sample_rate, format="hdf5", host=self.host or DEFAULT_URL)
        return tuple(sorted({u for u in urls if url_segment(u)[0] < end and url_segment(u)[1] > start}))

    def fetch(self, frame: pd.DataFrame) -> pd.Index:
        """Locate every candidate's files, download each distinct file once; the candidates whose files
        all arrived whole (the others summed up in one warning each for locating and downloading), or
        ``StrainUnreachable`` when GWOSC cannot be reached at all."""
        import requests

        records = dict(zip(frame.index.astype(str), frame.to_dict("records"), strict=True))

        def locate(cid: str) -> tuple[str, ...] | Exception:
            try:
                return self.urls(cid, records[cid])
            except (ValueError, OSError) as err:  # no data at that time, or GWOSC unreachable
                return err

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            located = dict(zip(records, pool.map(locate, records), strict=True))
        failed = {cid: err for cid, err in located.items() if isinstance(err, Exception)}
        network = [err for err in failed.values() if isinstance(err, (requests.ConnectionError, requests.Timeout))]
        if network and len(failed) == len(records):
            raise StrainUnreachable(self.host_name, network_reason(network[0]), len(records))
        warn_failures("GWOSC holds no strain for", failed, len(records))
        wanted = [u for found in located.values() if not isinstance(found, Exception) for u in found]
        fetched = fetch_files(wanted, self.cache_dir, workers=self.workers, retries=self.retries,
                              timeout=self.timeout, progress=self.progress)
        warn_failures("GWOSC did not send", {u: r for u, r in fetched.items() if isinstance(r, Exception)},
                      len(fetched), unit="files")
        held = []
        for cid, found in located.items():
            if not isinstance(found, Exception) and all(isinstance(fetched[u], Path) for u in found):
                self.located[cid] = found
                held.append(cid)
        log.info("GWOSC strain for %d of %d candidates: %d files (cache %s)", len(held), len(records),
                 len(fetched), self.cache_dir)
        return pd.Index(held, name="id")

    @property
    def host_name(self) -> str:
        from gwosc.api import DEFAULT_URL

        return urlsplit(self.host or DEFAULT_URL).netloc or str(self.host)

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        urls = self.located.get(cid) or self.urls(cid, row)
        paths = [fetch_file(u, self.cache_dir, retries=self.retries, timeout=self.timeout) for u in urls]
        _, event_time = event_span(cid, row)
        return read_strain(paths, event_time, self.pad, format="hdf5.gwosc", source="gwosc",
                           name=" ".join(Path(u).name for u in urls))


# -- real strain: gwpy's TimeSeries.get (frames through gwdatafind, NDS2) -----------------------------

class GwpyGetStrain:
    """Strain through gwpy's ``TimeSeries.get(channel, start, end, source=...)``, for LIGO cluster users:
    frames found with gwdatafind (``source="files"``, ``frametype``), or NDS2 (``source="nds2"``, ``host``).

    ``channel`` may hold ``{ifo}`` (e.g. ``{ifo}:GDS-CALIB_STRAIN_CLEAN``). ``fetch`` reads each candidate's
    ``event_time ± pad`` once into ``cache_dir`` (one small GWOSC-format HDF5 per candidate, written whole or
    not at all), so render workers and later rounds read it from disk.
    """

    #: the images/strain option that configures it
    OPTION = "gwpy_get"

    def __init__(self, channel: str = "{ifo}:GDS-CALIB_STRAIN", source: str | None = None, pad: float = 8.0,
                 cache_dir: str = "~/.cache/glitchrun/gwpy-get", workers: int = 2, **kwargs: Any) -> None:
        self.channel = channel
        self.source = source
        self.pad = float(pad)
        self.cache_dir = resolve_path(cache_dir)
        self.workers = int(workers)
        self.kwargs = kwargs

    def path(self, cid: str, row: Mapping[str, Any]) -> Path:
        ifo, event_time = event_span(cid, row)
        channel = self.channel.format(ifo=ifo)
        start, duration = math.floor(event_time - self.pad), math.ceil(2 * self.pad) + 1
        desc = re.sub(r"[^A-Za-z0-9]", "_", channel.partition(":")[2] or channel)
        return self.cache_dir / f"{ifo[0]}-{ifo}_{desc}-{start}-{duration}.hdf5"

    def fetch_one(self, cid: str, row: Mapping[str, Any]) -> Path:
        from gwpy.timeseries import TimeSeries

        path = self.path(cid, row)
        if path.is_file():
            return path
        ifo, _ = event_span(cid, row)
        start, duration = (int(x) for x in path.stem.rsplit("-", 2)[1:])
        series = TimeSeries.get(self.channel.format(ifo=ifo), start, start + duration, source=self.source,
                                **self.kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        rate = int(round(series.sample_rate.to("Hz").value))
        write_gwosc_hdf5(part, np.asarray(series.value, dtype=np.float64), ifo, int(series.t0.value), rate)
        os.replace(part, path)
        return path

    def fetch(self, frame: pd.DataFrame) -> pd.Index:
        records = dict(zip(frame.index.astype(str), frame.to_dict("records"), strict=True))

        def one(cid: str) -> Exception | None:
            try:
                self.fetch_one(cid, records[cid])
                return None
            except Exception as err:  # gwpy raises many kinds (no frames, NDS2 refused, no channel)
                return err

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            outcome = dict(zip(records, pool.map(one, records), strict=True))
        warn_failures("TimeSeries.get found no strain for", {c: e for c, e in outcome.items() if e}, len(records))
        return pd.Index([cid for cid, err in outcome.items() if err is None], name="id")

    def segment(self, cid: str, row: Mapping[str, Any]) -> StrainSegment | None:
        path = self.fetch_one(cid, row)
        _, event_time = event_span(cid, row)
        segment = read_strain([path], event_time, self.pad, format="hdf5.gwosc", source="gwpy-get",
                              name=self.channel.format(ifo=row["ifo"]))
        return segment


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
