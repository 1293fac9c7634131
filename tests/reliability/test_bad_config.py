"""Bad config values fail before glitchrun talks to any Zooniverse: no embedded server storage is made and
no HTTP request is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import HydraException

from glitchrun.zooniverse.backend import LocalBackend

from .conftest import Calls, RunJob

#: (job, overrides, what the error says)
BAD = [
    ("al_round", ["al.batch_size=0"], "al.batch_size must be at least 1, got 0"),
    ("al_round", ["al.batch_size=-20"], "al.batch_size must be at least 1, got -20"),
    ("al_round", ["al.seed_per_class=-1"], "al.seed_per_class must be at least 1"),
    ("al_round", ["al.seed_fraction=1.5"], "al.seed_fraction must be in (0, 1]"),
    ("al_round", ["strategy.fractions.margin=0.5"], "strategy fractions must be >= 0 and sum to 1"),
    ("al_round", ["strategy.fractions.margin=1.2", "strategy.fractions.high_probability=-0.2"],
     "strategy fractions must be >= 0 and sum to 1"),
    ("al_round", ["+strategy.fractions.bogus=0"], "unknown strategy part(s) ['bogus']"),
    ("al_round", ["data.n=-5"], "data.n must be at least 1"),
    ("al_round", ["data.labelled_per_class=-2"], "data.labelled_per_class at least 0"),
    ("al_round", ["campaign.workflow.retirement_count=0"], "retirement_count must be >= 1"),
    ("init_project", ["uploader.workers=0"], "workers >= 1"),
    ("init_project", ["uploader.retries=-1"], "retries >= 0"),
    ("init_project", ["backend.retries=-1"], "backend: retries and backoff must be >= 0"),
    ("init_project", ["backend.faults.error_rate=2"], "faults.error_rate must be between 0 and 1"),
    ("export_download", ["job.timeout=0"], "timeout and poll_interval must be > 0"),
    ("export_download", ["job.exports=[classifications,talk]"], "exports must be a non-empty list"),
    ("dedupe", ["job.subject_set_name=batch-1", "job.batch_size=0"], "batch_size must be 1..100"),
    ("dedupe", ["job.subject_set_name=batch-1", "job.keep=middle"], "keep must be one of"),
    ("update_metadata", ["job.csv=updates.csv", "job.subject_set_name=batch-1", "job.workers=0"],
     "workers must be >= 1"),
    ("update_metadata", ["job.csv=updates.csv", "job.subject_set_name=batch-1", "job.mode=upsert"],
     "mode must be one of"),
]


@pytest.mark.parametrize("job,overrides,message", BAD, ids=[" ".join(o) for _, o, _ in BAD])
def test_bad_values_fail_before_any_request(run_job: RunJob, http_calls: Calls, local_backend: LocalBackend, job: str,
                                            overrides: list[str], message: str) -> None:
    with pytest.raises(Exception) as failure:
        run_job(job, *overrides)
    assert message in str(failure.value)
    assert http_calls == [], "a request was sent"
    assert not local_backend.storage_dir.exists(), "the embedded Panoptes was started"


def test_an_unknown_option_is_a_hydra_error_naming_the_group(run_job: RunJob, http_calls: Calls,
                                                             local_backend: LocalBackend) -> None:
    with pytest.raises(HydraException, match="Could not find 'strategy/uncertainty_and_margin'"):
        run_job("al_round", "strategy=uncertainty_and_margin")
    assert http_calls == [] and not local_backend.storage_dir.exists()


def test_the_command_line_exits_non_zero_and_says_what_is_wrong(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "glitchrun", f"paths.outputs={tmp_path}", "strategy=uncertainty_and_margin"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "Could not find 'strategy/uncertainty_and_margin'" in done.stderr
    assert "Available options" in done.stderr and "margin" in done.stderr
    assert not (tmp_path / "embedded_panoptes").exists()
