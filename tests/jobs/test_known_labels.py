"""Known labels never enter the pool (issue 23): with ``data=gravityspy`` and ``al.seed_per_class`` as the README
says, the seed's labels train the learner, unlabelled rows are the pool, and a labelled row the seed left out is
neither: it is never sent to volunteers. The real O3a sample's rows, half of them with their labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from glitchrun.campaign.state import CampaignState
from glitchrun.cli import run

SAMPLE = Path(__file__).resolve().parents[2] / "glitchrun" / "data" / "samples" / "gravityspy_o3a_h1_sample.csv"


@pytest.mark.slow
def test_labelled_rows_beyond_the_seed_neither_train_nor_are_queried(tmp_path: Path) -> None:
    rows = pd.read_csv(SAMPLE)
    known = rows.groupby("label").head(5).index  # 5 of each class's 10 keep their label
    rows.loc[~rows.index.isin(known), "label"] = None
    rows.to_csv(tmp_path / "half_labelled.csv", index=False)
    labelled, unlabelled = set(rows.loc[known, "id"]), set(rows.loc[~rows.index.isin(known), "id"])

    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=[
            "+experiment=o3a_sample", f"data.path={tmp_path / 'half_labelled.csv'}", "data.labels_as=label",
            "al.seed_per_class=2", "~images/strain", "images.allow_synthetic=true",  # offline: synthetic Q-scans
            f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / 'run'}", "images.size=[160,120]",
            "images.durations=[1.0]", "images.n_jobs=1", "images.progress=false"])
    result = run(cfg)
    assert result.status == "uploaded"

    training = pd.read_csv(tmp_path / "run" / "labelled_pool.csv")
    assert len(training) == 2 * rows.loc[known, "label"].nunique() and set(training["source"]) == {"data"}
    assert set(training["candidate_id"]) <= labelled
    pool = set(pd.read_csv(tmp_path / "run" / "unlabelled_pool.csv")["candidate_id"])
    manifest = pd.read_csv(tmp_path / "run" / "manifest.csv")
    marked = manifest["#Type"].eq("Gold") if "#Type" in manifest else pd.Series(False, index=manifest.index)
    batch, shown_known = set(manifest.loc[~marked, "candidate_id"]), set(manifest.loc[marked, "candidate_id"])
    assert pool == unlabelled and batch <= unlabelled and len(batch) + len(shown_known) == 10
    # the known-answer subjects (campaign.gold.share, issue 21) are seed labels, shown as gold, never a pick
    assert len(shown_known) == 1 and shown_known <= set(training["candidate_id"])
    state = CampaignState(tmp_path / "campaigns" / "o3a-sample")
    assert set(state.labels().index) == set(training["candidate_id"])
