"""Trying again after transient failures: what counts as transient, and the retry policy.

One policy for every caller (the backends' client, the upload engine, the jobs), so a 5xx, a dropped
connection or a timeout is retried the same short, bounded way everywhere, instead of panoptes-client's
own 40 s of retries, and a 4xx (which would only repeat) never is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from panoptes_client.panoptes import PanoptesAPIException

log = logging.getLogger(__name__)

T = TypeVar("T")


def transient(err: BaseException) -> bool:
    """Worth another try: a 5xx answer, a dropped connection or a timeout (not a 4xx: that would repeat)."""
    if isinstance(err, requests.HTTPError):
        return err.response is not None and err.response.status_code >= 500
    if isinstance(err, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return True
    return isinstance(err, PanoptesAPIException) and str(err).startswith("Received HTTP status code 5")


@dataclass(frozen=True)
class Retry:
    """Tries again a call that is safe to repeat after a transient failure (5xx, dropped connection,
    timeout): ``retries`` times at most, ``backoff`` seconds before the first retry, doubling."""

    retries: int = 4
    backoff: float = 2.5

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0:
            raise ValueError(f"backend: retries and backoff must be >= 0, got {self.retries} and {self.backoff}")

    def __call__(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except Exception as err:
                if attempt >= self.retries or not transient(err):
                    raise
                delay = self.backoff * 2**attempt
                log.debug("transient failure (%s: %s); retry %d in %.2f s", type(err).__name__, err, attempt + 1, delay)
                time.sleep(delay)
                attempt += 1
