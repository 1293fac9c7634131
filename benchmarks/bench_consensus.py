"""Consensus methods side by side on simulated crowds, at a fixed vote count and with the sequential rule.

    python benchmarks/bench_consensus.py                      # as in BENCHMARKS.md (2,000 subjects, 3 seeds)
    python benchmarks/bench_consensus.py --seeds 0 --subjects 500

Per seed: 2,000 subjects drawn at the Gravity Spy v1.0 class priors (``glitchrun.data.synthetic``), votes
drawn by the crowds of ``conf/crowd/gravity_spy.yaml`` and ``conf/crowd/uneven.yaml`` (built with OmegaConf
and ``hydra.utils.instantiate``), each crowd's own consensus node as the model-based method. The learner's
vote is a real learner's: the random forest of ``conf/learner/random_forest.yaml`` trained on a labelled pool
of ``--pool`` other synthetic candidates; ``ml_weight`` is fitted (``fit_ml_weight``) on its 5-fold
cross-validated probabilities of that pool, and its predicted distribution for each subject is the prior.
The subjects are a random draw, not an active-learning batch (which the learner is less sure of).

Fixed count: every subject gets k votes; accuracy over all subjects, and the share accepted at the method's
threshold with the accuracy of those (calibration). Sequential: ``sequential_labels`` up to ``--max-votes``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.model_selection import cross_val_predict

from glitchrun.crowd.consensus import ACCEPTED, Consensus, DawidSkene, MajorityVote, fit_ml_weight, sequential_labels
from glitchrun.data.loaders import FeatureSpec
from glitchrun.data.synthetic import GRAVITY_SPY_CLASSES, generate

CONF = Path(__file__).resolve().parents[1] / "conf"
CLASSES = list(GRAVITY_SPY_CLASSES)
CROWDS = ["gravity_spy", "uneven"]


def crowd(name: str, seed: int):
    """The ``crowd=<name>`` option as the entrypoint builds it (volunteers and consensus)."""
    return instantiate(OmegaConf.create({"seed": seed, "crowd": OmegaConf.load(CONF / "crowd" / f"{name}.yaml")}).crowd)


def learner_prior(subjects: pd.DataFrame, pool: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, float, float]:
    """The learner's class distribution per subject, the fitted ml_weight, and the learner's accuracy."""
    cfg = OmegaConf.create({"seed": seed, "learner": OmegaConf.load(CONF / "learner" / "random_forest.yaml")})
    estimator = instantiate(cfg.learner)
    features = FeatureSpec()
    X_pool, y_pool = features.matrix(pool), pool["truth"].to_numpy()
    cv = cross_val_predict(estimator, X_pool, y_pool, cv=5, method="predict_proba")
    estimator.fit(X_pool, y_pool)
    columns = list(estimator.classes_)
    weight = fit_ml_weight(pd.DataFrame(cv, columns=columns).reindex(columns=CLASSES, fill_value=0.0).to_numpy(),
                           y_pool, CLASSES)
    proba = pd.DataFrame(estimator.predict_proba(features.matrix(subjects)), index=subjects["id"], columns=columns)
    proba = proba.reindex(columns=CLASSES, fill_value=0.0)
    return proba, weight, float((proba.idxmax(axis=1).to_numpy() == subjects["truth"].to_numpy()).mean())


def top_class_only(proba: pd.DataFrame) -> pd.DataFrame:
    """The prior ``ingest.ml_prior`` builds from ``#predicted_class`` and ``#probability`` alone."""
    top = proba.max(axis=1).to_numpy()[:, None]
    spread = np.broadcast_to((1.0 - top) / (proba.shape[1] - 1), proba.shape)
    return pd.DataFrame(np.where(proba.eq(proba.max(axis=1), axis=0), top, spread), index=proba.index,
                        columns=proba.columns)


def methods(model: DawidSkene, weight: float) -> dict[str, tuple[Consensus, str | None]]:
    """name -> (consensus, which prior): the crowd's configured model with and without the learner."""
    kept = {k: getattr(model, k) for k in ("min_votes", "agreement", "volunteer_accuracy", "prior_votes",
                                           "class_prior", "class_prior_votes", "leave_one_out", "max_iter", "tol")}
    like = type(model)
    return {
        "majority vote": (MajorityVote(min_votes=model.min_votes, agreement=model.agreement), None),
        "Dawid-Skene, plain ML EM (crowd-kit's)": (
            DawidSkene(min_votes=model.min_votes, agreement=model.agreement, prior_votes=0, class_prior="estimated",
                       class_prior_votes=0, leave_one_out=False, max_iter=300), None),
        f"{like.__name__}, no ML prior": (like(**kept), None),
        f"{like.__name__} + ML top class (ingest.ml_prior), w=1": (like(**kept), "top"),
        f"{like.__name__} + whole ML distribution, w=1": (like(**kept), "full"),
        f"{like.__name__} + whole ML distribution, fitted w": (like(**kept, ml_weight=weight), "full"),
    }


def scores(result: pd.DataFrame, truth: pd.Series) -> dict[str, float]:
    right = result["consensus_label"].to_numpy() == truth.reindex(result.index).to_numpy()
    accepted = (result["status"] == ACCEPTED).to_numpy()
    return {"accuracy": right.mean(), "accepted": accepted.mean(),
            "accuracy_accepted": right[accepted].mean() if accepted.any() else np.nan,
            "votes": result["votes"].mean(),
            "votes_per_label": result["votes"].sum() / max(accepted.sum(), 1)}


def run(seeds: list[int], n: int, pool_size: int, ks: list[int], max_votes: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    fixed, sequential = [], []
    for seed in seeds:
        frame = generate(n + pool_size, seed)
        subjects, pool = frame.iloc[:n], frame.iloc[n:]
        truth = pd.Series(subjects["truth"].to_numpy(), index=subjects["id"].to_numpy())
        proba, weight, ml_accuracy = learner_prior(subjects, pool, seed)
        priors = {None: None, "top": top_class_only(proba), "full": proba}
        print(f"seed {seed}: learner accuracy {ml_accuracy:.3f} on the subjects, fitted ml_weight {weight:.2f}",
              flush=True)
        for name in CROWDS:
            built = crowd(name, seed)
            votes = built.volunteers.votes(truth, CLASSES, max(max(ks), max_votes))
            rank = votes.groupby("subject_id", sort=False).cumcount()
            for method, (consensus, prior) in methods(built.consensus, weight).items():
                for k in ks:
                    result = consensus.aggregate(votes[rank < k], CLASSES, priors[prior])
                    fixed.append({"crowd": name, "method": method, "k": k, "seed": seed, **scores(result, truth)})
                if method.startswith("Dawid-Skene, plain") or "w=1" in method:
                    continue
                result = sequential_labels(consensus, votes, CLASSES, priors[prior], max_votes=max_votes)
                sequential.append({"crowd": name, "method": method, "seed": seed, **scores(result, truth)})
    return pd.DataFrame(fixed), pd.DataFrame(sequential)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=2000, help="labelled candidates the learner is trained on")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3, 5, 8])
    parser.add_argument("--max-votes", type=int, default=10, help="the sequential rule's cap")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start, cpu = time.perf_counter(), time.process_time()
    fixed, sequential = run(args.seeds, args.subjects, args.pool, args.ks, args.max_votes)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    for name in CROWDS:
        rows = fixed[fixed["crowd"] == name].groupby(["method", "k"], sort=False)[
            ["accuracy", "accepted", "accuracy_accepted"]].mean()
        print(f"\n{name} crowd, fixed vote count (mean of {len(args.seeds)} seeds): accuracy over all subjects")
        print(rows["accuracy"].unstack("k").round(3).to_string())
        print(f"\n{name} crowd, calibration: share accepted at the threshold / accuracy of the accepted")
        both = rows["accepted"].map("{:.2f}".format) + " / " + rows["accuracy_accepted"].map("{:.3f}".format)
        print(both.unstack("k").to_string())
        seq = sequential[sequential["crowd"] == name].groupby("method", sort=False)[
            ["votes", "votes_per_label", "accepted", "accuracy_accepted", "accuracy"]].mean()
        print(f"\n{name} crowd, sequential rule (cap {args.max_votes} votes)")
        print(seq.round(3).to_string())
    print(f"\n{time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU")


if __name__ == "__main__":
    main()
