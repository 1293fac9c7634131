"""Credential-like override keys are recognised; ordinary keys that merely contain a word are not."""

from glitchrun.guard import credential_keys


def test_credential_keys_are_recognised_by_their_last_component():
    overrides = ["+password=x", "backend.client_secret=y", "+job.token=z", "~api_key", "+PANOPTES_PASSWORD=w"]
    assert credential_keys(overrides) == ["password", "backend.client_secret", "job.token", "api_key", "PANOPTES_PASSWORD"]


def test_ordinary_keys_pass():
    overrides = ["backend.token_lifetime=60", "al.batch_size=5", "job.subject_set_name=x", "+experiment=o3a_sample"]
    assert credential_keys(overrides) == []
