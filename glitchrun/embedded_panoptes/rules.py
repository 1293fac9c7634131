"""The real server's limits, as knobs: real values by default (``conf/backend/local.yaml`` ``rules:``).

- export rate limit: ``config/initializers/rate_limit_dump_worker.rb`` (``DUMP_CONGESTION_OPTS_INTERVAL``
  86400 s, ``..._MAX_IN_INTERVAL`` 1, ``..._MIN_DELAY`` 43200 s), applied per resource and export medium
  by ``app/workers/concerns/rate_limit_dump_worker.rb``; admins are exempt.
- subject upload limit: ``config/initializers/user_limits.rb`` reads ``USER_SUBJECT_LIMIT`` (100 when unset
  on a bare install); zooniverse.org accounts get 10,000, the value glitchrun plans with
  (``subjects_controller.rb`` ``check_subject_limit``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Rules:
    """``export_interval``/``export_max_in_interval``/``export_min_delay`` in seconds; ``subject_limit`` per user."""

    export_interval: float = 86400.0
    export_max_in_interval: int = 1
    export_min_delay: float = 43200.0
    subject_limit: int = 10000
    #: the clock the rate limit reads (tests may move it)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @classmethod
    def of(cls, settings: Rules | Mapping[str, Any] | None) -> Rules:
        """Rules from a config mapping (unknown keys refused in one line) or as given."""
        if isinstance(settings, Rules):
            return settings
        known = {f.name for f in fields(cls)} - {"clock"}
        unknown = sorted(set(settings or {}) - known)
        if unknown:
            raise ValueError(f"unknown embedded Panoptes rule(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(settings or {}))
