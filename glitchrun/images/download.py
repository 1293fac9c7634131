"""Data files fetched once into a cache directory: concurrently, resumed where a transfer broke, never half.

A file is written to ``<name>.part`` and renamed to its final name only once it has the length the server
announced and, for HDF5, opens as HDF5; so a file in the cache is always whole, and a reader can never see
a partial one. A broken transfer is resumed with an HTTP ``Range`` request from the bytes already on disk
(a server that ignores ``Range`` sends the whole file again). One progress bar counts bytes and files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import h5py
import requests
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: bytes written at a time: what a broken transfer can lose before it is resumed
CHUNK = 1 << 16
USER_AGENT = "glitchrun"


class DownloadError(RuntimeError):
    """A file could not be fetched whole after every retry."""


def cache_path(cache_dir: Path, url: str) -> Path:
    """Where ``url`` is kept: ``<cache_dir>/<host>/<file name>`` (two servers never share a file)."""
    parts = urlsplit(url)
    return Path(cache_dir) / parts.netloc.replace(":", "_") / Path(parts.path).name


class _Progress:
    """One tqdm bar of bytes for a set of files; its description counts the files done."""

    def __init__(self, files: int, enabled: bool) -> None:
        self.files = files
        self.done = 0
        self.lock = threading.Lock()
        self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                        disable=None if enabled else True,
                        desc=self._desc())

    def _desc(self) -> str:
        return f"strain files {self.done}/{self.files}"

    def expect(self, size: int) -> None:
        with self.lock:
            self.bar.total += size
            self.bar.refresh()

    def advance(self, size: int) -> None:
        with self.lock:
            self.bar.update(size)

    def finished(self) -> None:
        with self.lock:
            self.done += 1
            self.bar.set_description(self._desc())

    def close(self) -> None:
        self.bar.close()


def _whole(path: Path, size: int | None) -> bool:
    """``path`` has the announced ``size`` and, if it is HDF5 by name, opens as HDF5."""
    if size is not None and path.stat().st_size != size:
        return False
    if path.suffix in (".hdf5", ".h5"):
        try:
            with h5py.File(path, "r"):
                return True
        except OSError:
            return False
    return True


def _transfer(session: requests.Session, url: str, part: Path, timeout: float, progress: _Progress,
              announced: list[int]) -> int | None:
    """Append the rest of ``url`` to ``part`` (all of it if the server ignores ``Range``); the file's size."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={have}-"} if have else {})}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:  # nothing left to send: the part is whole, or not this file at all
            return have
        response.raise_for_status()
        if response.status_code == 206:
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            size = int(total) if total.isdigit() else None
            mode = "ab"
        else:
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            size = int(length) if length is not None else None
        if size is not None and not announced:
            announced.append(size)
            progress.expect(size)
            if mode == "ab":
                progress.advance(have)  # resuming a part an earlier run left
        with part.open(mode) as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                progress.advance(len(chunk))
        return size


def fetch_file(url: str, cache_dir: Path, *, session: requests.Session | None = None, retries: int = 3,
               timeout: float = 60.0, progress: _Progress | None = None) -> Path:
    """``url`` in the cache, downloaded (or resumed) first if needed; ``DownloadError`` if it never arrives
    whole. A ``.part`` left by a crash is resumed, not trusted."""
    path = cache_path(cache_dir, url)
    progress = progress or _Progress(1, enabled=False)
    if path.is_file():
        progress.finished()
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    session = session or requests.Session()
    announced: list[int] = []
    error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            size = _transfer(session, url, part, timeout, progress, announced)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            error = err
            log.info("%s broke off after %d bytes (%s); resuming", url, part.stat().st_size if part.exists() else 0,
                     type(err).__name__)
            time.sleep(min(2.0, 0.1 * 2 ** attempt))
            continue
        except requests.HTTPError as err:
            raise DownloadError(f"{url}: {err}") from err
        if part.exists() and _whole(part, size):
            os.replace(part, path)
            progress.finished()
            return path
        error = DownloadError(f"{url}: the file arrived incomplete or unreadable")
        part.unlink(missing_ok=True)  # not this file, or corrupt: start again from the first byte
    raise DownloadError(f"{url}: not fetched whole after {retries + 1} attempts ({error})")


def fetch_files(urls: Sequence[str], cache_dir: Path, *, workers: int = 4, retries: int = 3, timeout: float = 60.0,
                progress: bool = True) -> dict[str, Path | DownloadError]:
    """Each distinct URL fetched once, ``workers`` at a time; the cached path or the error, per URL."""
    unique = list(dict.fromkeys(urls))
    bar = _Progress(len(unique), progress)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max(workers, 1)))
    session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=max(workers, 1)))

    def one(url: str) -> Path | DownloadError:
        try:
            return fetch_file(url, cache_dir, session=session, retries=retries, timeout=timeout, progress=bar)
        except DownloadError as err:
            return err

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = dict(zip(unique, pool.map(one, unique), strict=True))
    finally:
        bar.close()
        session.close()
    return results
