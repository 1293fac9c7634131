"""``job=export_request``: ask Zooniverse to generate the campaign's data exports.

Generating a large project's export takes Zooniverse minutes to hours, so asking and downloading are
separate jobs: request now, ``job=export_download`` later.
"""

from __future__ import annotations

import logging

from glitchrun.zooniverse.exports import ExportJob, media_state

log = logging.getLogger(__name__)


class ExportRequest(ExportJob):
    """Request each configured export of the project (or the workflow's classification export)."""

    def run(self) -> dict[str, dict]:
        """Returns the medium Zooniverse made for each export type requested (not those within the rate limit)."""
        self.check_config()
        with self.backend.connect() as connection:
            target = self.target(connection.login)
            media = {}
            for export_type in self.exports:
                medium = self.request(connection, target, export_type)
                if medium is not None:
                    media[export_type] = medium
                    log.info("requested the %s export of %s (state %r)", export_type, target, media_state(medium))
        log.info("fetch them with: glitchrun job=export_download job.exports=[%s]%s", ",".join(self.exports),
                 f" job.workflow_id={self.workflow_id}" if self.workflow_id else "")
        return media
