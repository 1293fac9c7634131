"""The single entrypoint: compose the config, instantiate the selected job, run it.

Business logic lives in the job components; this module only wires Hydra to them so that the same
``run(cfg)`` is callable from tests with a config made by Hydra's compose API.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger("glitchrun")


def run(cfg: DictConfig) -> Any:
    """Instantiate ``cfg.job`` (with every component it references) and run it."""
    job = instantiate(cfg.job, _convert_="all")
    return job.run()


@hydra.main(version_base="1.3", config_path="pkg://glitchrun.conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    try:
        return run(cfg)
    except Exception:
        # into the run directory's log file with the traceback, before Hydra turns it into exit code 1
        log.exception("glitchrun job failed")
        raise


if __name__ == "__main__":
    main()
