"""Hydra callbacks that stop a run before Hydra makes its run directory: credentials typed as command-line
overrides, and a config glitchrun cannot run with.

Hydra saves every override into ``.hydra/{config,hydra,overrides}.yaml`` before the job runs, so a
password given as ``+password=...`` would sit in plain text in the run directory. Credentials belong in
the environment; this stops such a run before Hydra writes anything. A misspelt key or a value of the wrong
type is refused as early, so it leaves no run directory behind. Both exit the process (``Reported``, a
SystemExit: one line, exit code 2) rather than raising an error, because Hydra turns a callback's exceptions
into mere warnings.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from glitchrun import config as typed_config
from glitchrun.console import Reported

#: last component of an override key that names a credential (``backend.token_lifetime`` does not)
CREDENTIAL_KEY = re.compile(r"password|passwd|secret|^(access_|refresh_)?token$|api_?key|^credentials?$", re.I)


def credential_keys(overrides: list[str]) -> list[str]:
    """The keys of ``key=value`` overrides that look like credentials (values are never returned)."""
    keys = [override.split("=", 1)[0].lstrip("+~") for override in overrides]
    return [key for key in keys if CREDENTIAL_KEY.search(key.rsplit(".", 1)[-1])]


class RefuseCredentialOverrides(Callback):
    """Stop a run or sweep whose command line sets a credential-like key."""

    def check(self, config: DictConfig) -> None:
        keys = credential_keys(list(config.hydra.overrides.task))
        if keys:
            raise Reported(
                f"refusing to run: {', '.join(keys)} on the command line look like credentials, which Hydra "
                "would save in plain text under .hydra/; set PANOPTES_USERNAME/PANOPTES_PASSWORD (or "
                "PANOPTES_CLIENT_ID/PANOPTES_CLIENT_SECRET) in the environment instead"
            )

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config)


class CheckConfig(Callback):
    """Check names and types (``glitchrun.config.check``) before the run directory exists; the job checks
    again for callers that compose the config themselves. A sweep's jobs are checked in the job."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            typed_config.check(config)
        except typed_config.ConfigError as err:
            raise Reported(str(err)) from err
