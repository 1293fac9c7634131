"""Derive the synthetic generator's numbers (``glitchrun.data.synthetic.FIT``) from real Gravity Spy tables.

``python -m glitchrun.data.calibrate --refit ../shared/data`` prints the new ``FIT`` as Python source. It
lives apart from the generator because it reads real tables through ``glitchrun.data.loaders``, which
itself draws synthetic candidates: imports go one way (calibrate -> loaders -> synthetic).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from glitchrun.csvio import read_csv
from glitchrun.data.loaders import O3_ADDED_CLASSES, GravitySpyData
from glitchrun.data.synthetic import (
    FEATURES,
    O3A_FILE,
    SUMMARY_FILE,
    SUMMARY_MEANS,
    Fit,
    Shape,
)

SUMMARY_SCHEMA = pa.DataFrameSchema(
    {
        "label": pa.Column(str, unique=True),
        "n_H1": pa.Column(int, pa.Check.ge(0)),
        "n_L1": pa.Column(int, pa.Check.ge(0)),
        **{column: pa.Column(float, pa.Check.gt(0), coerce=True) for column in SUMMARY_MEANS.values()},
    },
)


def refit(folder: Path) -> Fit:
    """Derive ``FIT`` from the v1.0 class summary and the O3a sample in ``folder`` (rounded as stored)."""

    summary = read_csv(folder / SUMMARY_FILE, SUMMARY_SCHEMA, what="class summary").set_index("label")
    sample = GravitySpyData(folder / O3A_FILE, classes=[*summary.index, *O3_ADDED_CLASSES]).load().frame
    logs = np.log(sample[list(FEATURES)].to_numpy(dtype=np.float64))
    design = np.column_stack([np.ones(len(logs)), logs])
    amplitude, *_ = np.linalg.lstsq(design, np.log(sample["amplitude"].to_numpy(dtype=np.float64)), rcond=None)

    spread = pd.DataFrame(np.column_stack([logs, np.log(sample["amplitude"]) - design @ amplitude]),
                          index=sample["label"].to_numpy(dtype=object))
    groups = spread.groupby(level=0)
    within = spread - groups.transform("mean")
    pooled_sd = np.sqrt((within**2).sum() / (len(within) - groups.ngroups))
    class_sd = groups.std(ddof=1)

    shapes = {
        label: Shape(int(row["n_H1"]), int(row["n_L1"]), rounded(row[list(SUMMARY_MEANS.values())], 3),
                     rounded(class_sd.loc[label] if label in class_sd.index else pooled_sd, 3))
        for label, row in summary.iterrows()
    }
    correlation = np.corrcoef(within.to_numpy()[:, : len(FEATURES)].T)
    return Fit(shapes, tuple(rounded(row, 3) for row in correlation), rounded(amplitude, 4))


def rounded(values: Sequence[float] | np.ndarray | pd.Series, decimals: int) -> tuple[float, ...]:
    """Plain Python floats, rounded as the stored table keeps them."""
    return tuple(round(float(v), decimals) for v in values)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glitchrun.data.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--refit", type=Path, required=True, metavar="FOLDER",
                        help=f"folder holding {SUMMARY_FILE} and {O3A_FILE}; prints the new FIT")
    print(refit(parser.parse_args(argv).refit).source())



if __name__ == "__main__":
    main()
