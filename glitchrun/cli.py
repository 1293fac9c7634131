"""The single entrypoint: compose the config, check it, instantiate the selected job, run it.

Business logic lives in the job components; this module only wires Hydra to them so that the same
``run(cfg)`` is callable from tests with a config made by Hydra's compose API. What the terminal shows
(errors, warnings, ``--version``, ``--copy-config``) is ``glitchrun.console``'s.
"""

from __future__ import annotations

from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from glitchrun import config, console


def run(cfg: DictConfig) -> Any:
    """Check ``cfg`` (names and types), instantiate ``cfg.job`` with every component it references, run it."""
    config.check(cfg)
    job = instantiate(cfg.job, _convert_="all")
    return job.run()


@hydra.main(version_base="1.3", config_path="pkg://glitchrun.conf", config_name="config")
def compose_and_run(cfg: DictConfig) -> Any:
    with console.job_console():
        return run(cfg)


def main() -> None:
    """The ``glitchrun`` command."""
    console.command(compose_and_run)


if __name__ == "__main__":
    main()
