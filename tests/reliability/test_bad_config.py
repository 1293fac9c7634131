"""Bad config values fail before glitchrun talks to any Zooniverse: no embedded server storage is made and
no HTTP request is sent. Wrong types and unknown keys are refused by the typed config (``glitchrun.config``)
before any component is built, naming the full key and what it takes."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import HydraException

from glitchrun.config import ConfigError
from glitchrun.console import user_message
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


#: (job, overrides, the error): wrong types and unknown keys, refused by the typed config
MISTYPED = [
    ("al_round", ["al.batch_size=abc"], "al.batch_size must be an integer, got 'abc'"),
    ("al_round", ["al.seed_fraction=half"], "al.seed_fraction must be a number or null, got 'half'"),
    ("al_round", ["+al.batch_sise=5"], "al.batch_sise is not a setting of al; did you mean al.batch_size?"),
    ("al_round", ["seed=x"], "seed must be an integer, got 'x'"),
    ("al_round", ["campaign.workflow.classes=Blip"], "campaign.workflow.classes must be a list of strings, got 'Blip'"),
    ("al_round", ["campaign.project.private=maybe"], "campaign.project.private must be true or false, got 'maybe'"),
    ("al_round", ["+campaign.workflow.retirment_count=2"], "did you mean campaign.workflow.retirement_count?"),
    ("al_round", ["+learner.n_estimatorz=5"], "learner.n_estimatorz is not a setting of learner; did you mean "
                                              "learner.n_estimators?"),
    ("al_round", ["campaign.retirement.max_votes=many"], "campaign.retirement.max_votes must be an integer, got 'many'"),
    ("al_round", ["+images.durationz=[1.0]"], "did you mean images.durations?"),
    ("init_project", ["uploader.workers=1.5"], "uploader.workers must be an integer, got 1.5"),
    ("init_project", ["+job.manifset=m.csv"], "job.manifset is not a setting of job; did you mean job.manifest?"),
    ("dedupe", ["job.subject_set_name=batch-1", "job.dry_run=maybe"], "job.dry_run must be true or false"),
    ("al_round", ["+bogus=1"], "bogus is not a setting of the config"),
]


@pytest.mark.parametrize("job,overrides,message", MISTYPED, ids=[" ".join(o) for _, o, _ in MISTYPED])
def test_a_wrong_type_or_unknown_key_is_refused_before_anything_is_built(
        run_job: RunJob, http_calls: Calls, local_backend: LocalBackend, job: str, overrides: list[str],
        message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        run_job(job, *overrides)
    assert message in str(failure.value)
    assert http_calls == [] and not local_backend.storage_dir.exists()


#: overrides Hydra refuses while composing, and the one line glitchrun makes of its error
COMPOSITION = [
    (["al.batch_sise=5"], "al.batch_sise is not a setting of al; did you mean al.batch_size?"),
    (["strateg=margin"], "strateg is not a setting of the config; did you mean strategy?"),
    (["strategy=uncertainty_and_margin"], "strategy has no option 'uncertainty_and_margin'; did you mean "
                                          "strategy=uncertainty? options: batch_uncertainty, committee"),
    (["job=dedupe", "job.dryrun=false"], "job.dryrun is not a setting of job; did you mean job.dry_run?"),
    (["al.batch_size=[1"], "cannot read the command line: no viable alternative at input '[1'; see https://hydra.cc"),
]


@pytest.mark.parametrize("overrides,message", COMPOSITION, ids=[" ".join(o) for o, _ in COMPOSITION])
def test_an_override_hydra_refuses_becomes_one_line_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(HydraException) as failure:
        with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
            compose("config", overrides=overrides)
    said = user_message(failure.value)
    assert said is not None and said.startswith(message), said
    assert "\n" not in said and "+" not in said.replace("https://", ""), "Hydra's hint to add the key with + is gone"
