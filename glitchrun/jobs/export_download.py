"""``job=export_download``: wait for the campaign's exports, download them and keep only valid, fresh files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glitchrun.zooniverse.exports import (
    EXPORT_INTERVAL,
    EXPORT_TYPES,
    ExportJob,
    fetch_export,
    wait_until_ready,
)

log = logging.getLogger(__name__)


class ExportDownload(ExportJob):
    """Optionally generate each export, wait until it is ready, stream it to ``<run_dir>/exports/``, validate it.

    ``max_age`` (seconds, null = any age) refuses an export generated longer ago; with
    ``require_all_classifications`` a classification export holding fewer rows than the classifications
    Zooniverse has counted is refused too (newer ones are missing).
    """

    def __init__(self, backend: Any, run_dir: str | os.PathLike[str], exports: Sequence[str] = EXPORT_TYPES,
                 project_id: int | str | None = None, project_name: str | None = None,
                 workflow_id: int | str | None = None, generate: bool = False, timeout: float = 600,
                 poll_interval: float = 2, max_age: float | None = 86400,
                 require_all_classifications: bool = True, export_interval: float = EXPORT_INTERVAL) -> None:
        super().__init__(backend, run_dir, exports, project_id, project_name, workflow_id, export_interval)
        self.generate = generate
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_age = max_age
        self.require_all_classifications = require_all_classifications

    def check_config(self) -> None:
        super().check_config()
        if self.timeout <= 0 or self.poll_interval <= 0:
            raise ValueError(f"timeout and poll_interval must be > 0 s, got {self.timeout} and {self.poll_interval}")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError(f"max_age must be > 0 s or null, got {self.max_age}")

    def run(self) -> dict[str, Path]:
        """Returns the path of each downloaded export; raises on the first one that is late, malformed or stale."""
        self.check_config()
        out_dir = self.run_dir / "exports"
        files = {}
        with self.backend.connect() as connection:
            target = self.target(connection.login)
            if self.generate:
                for export_type in self.exports:  # within the rate limit: the current export is downloaded
                    if self.request(connection, target, export_type) is not None:
                        log.info("requested a new %s export of %s", export_type, target)
            for export_type in self.exports:
                medium = wait_until_ready(target, export_type, self.timeout, self.poll_interval)
                files[export_type] = fetch_export(target, export_type, medium, out_dir, self.max_age,
                                                  self.require_all_classifications)
        log.info("exports of %s in %s", target, out_dir)
        return files
