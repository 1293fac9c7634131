"""The real server's limits, as knobs: real values by default (``conf/backend/local.yaml`` ``rules:``).

- export rate limit: ``config/initializers/rate_limit_dump_worker.rb`` (``DUMP_CONGESTION_OPTS_INTERVAL``
  86400 s, ``..._MAX_IN_INTERVAL`` 1, ``..._MIN_DELAY`` 43200 s), applied per resource and export medium
  by ``app/workers/concerns/rate_limit_dump_worker.rb``; admins are exempt.
- subject upload limit: ``config/initializers/user_limits.rb`` reads ``USER_SUBJECT_LIMIT`` (100 when unset
  on a bare install); zooniverse.org accounts get 10,000, the value glitchrun plans with
  (``subjects_controller.rb`` ``check_subject_limit``).

And two that make it behave as a busy real server (both 0, a quiet server, by default):

- ``visibility_lag``: on the real, Postgres-backed server an id is taken when a row is inserted but the row
  is seen by other requests only once its transaction commits, so under concurrent writes a classification
  can become visible after one with a higher id. Each new classification here becomes visible after a
  random lag of up to this many seconds (drawn from ``seed``), so later ids can show before earlier ones.
- ``worker_delay``: counting and retirement run in Sidekiq workers after the request
  (``lib/classification_lifecycle.rb`` -> ``classification_count_worker.rb`` -> ``retirement_worker.rb``;
  ``app/operations/workflows/retire_subjects.rb`` -> ``retire_subject_worker.rb``). With a delay they run
  here in a background worker that many seconds after the request (after the classification is visible);
  with 0 (and no lag) they run inside the request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Rules:
    """``export_interval``/``export_max_in_interval``/``export_min_delay`` in seconds; ``subject_limit`` per user;
    ``visibility_lag`` and ``worker_delay`` in seconds, ``seed`` for the lags."""

    export_interval: float = 86400.0
    export_max_in_interval: int = 1
    export_min_delay: float = 43200.0
    subject_limit: int = 10000
    visibility_lag: float = 0.0
    worker_delay: float = 0.0
    seed: int = 0
    #: the clock the rate limit, visibility and the worker read (tests may move it)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    #: the seeded stream of visibility lags (drawn under the store's lock, so in request order)
    _lags: random.Random = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("visibility_lag", "worker_delay"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"embedded Panoptes rule {name} must not be negative, got {getattr(self, name)}")
        object.__setattr__(self, "_lags", random.Random(f"{self.seed}:visibility"))

    def visible_at(self) -> float | None:
        """When a classification made now becomes visible to other requests: None (at once) on a quiet
        server, else after a random lag of up to ``visibility_lag`` seconds."""
        return self.clock() + self._lags.uniform(0.0, self.visibility_lag) if self.visibility_lag > 0 else None

    @property
    def busy(self) -> bool:
        """Whether counting and retirement wait for the background worker."""
        return self.visibility_lag > 0 or self.worker_delay > 0

    @classmethod
    def of(cls, settings: Rules | Mapping[str, Any] | None) -> Rules:
        """Rules from a config mapping (unknown keys refused in one line) or as given."""
        if isinstance(settings, Rules):
            return settings
        known = {f.name for f in fields(cls)} - {"clock", "_lags"}
        unknown = sorted(set(settings or {}) - known)
        if unknown:
            raise ValueError(f"unknown embedded Panoptes rule(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(settings or {}))
