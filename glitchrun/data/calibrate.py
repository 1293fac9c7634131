"""Fit the synthetic generator (``glitchrun.data.synthetic.FIT``) to real Gravity Spy tables.

    python -m glitchrun.data.calibrate --refit ../shared/data            # the shared v1.0 summary + O3a rows
    python -m glitchrun.data.calibrate --refit ../shared/data --table my_glitches.csv --min-rows 20

prints the new ``FIT`` as Python source and, on stderr, the classes it could not calibrate from real
rows (too few of them: v1.0 means and pooled spread instead) and the real classes it left out (not in the
summary, so without a prior). It lives apart from the generator because it reads real tables through
``glitchrun.data.loaders``, which itself draws synthetic candidates: imports go one way (calibrate ->
loaders -> synthetic).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from glitchrun.csvio import CsvError, read_csv, validate
from glitchrun.data.loaders import detect_format
from glitchrun.data.synthetic import LOG_FEATURES, O3A_FILE, SUMMARY_FILE, SUMMARY_MEANS, Fit, Shape

SUMMARY_SCHEMA = pa.DataFrameSchema(
    {
        "label": pa.Column(str, unique=True),
        "n_H1": pa.Column(int, pa.Check.ge(0)),
        "n_L1": pa.Column(int, pa.Check.ge(0)),
        **{column: pa.Column(float, pa.Check.gt(0), coerce=True) for column in SUMMARY_MEANS.values()},
    },
)
#: fewest labelled rows of a class to take its centre and spread from them
MIN_ROWS = 5
#: pseudo-rows of the pooled correlation each class's own correlation is shrunk towards (see
#: ``glitchrun.data.synthetic``); 10 real rows of a class then weigh 10 : 3
SHRINK_ROWS = 3.0
#: lowest ln-space spread kept: Omicron pins some features (real Whistles' central frequency sits at
#: 3,999 Hz, sd 0.006 in ln), and a class that narrow would be a spike no classifier could miss
MIN_LOG_SD = 0.05


@dataclass(frozen=True)
class Calibration:
    """A refit and what it could not do: class -> reason."""

    fit: Fit
    uncalibrated: dict[str, str]
    left_out: dict[str, str]

    def notes(self) -> list[str]:
        """One line per class the real rows did not calibrate, or left out."""
        return ([f"not calibrated: {name} ({why})" for name, why in self.uncalibrated.items()]
                + [f"left out: {name} ({why})" for name, why in self.left_out.items()])


def real_rows(path: Path) -> pd.DataFrame:
    """The labelled rows of a real Gravity Spy table (v1.0 or O3 catalogue format): label + ``LOG_FEATURES``."""
    raw = read_csv(path, what="Gravity Spy metadata")
    fmt = detect_format(list(raw.columns), path)
    missing = [fmt.columns[name] for name in LOG_FEATURES if fmt.columns[name] not in raw.columns]
    if missing:
        raise CsvError(f"{fmt.name} {path}: calibration needs the feature columns {missing}")
    labels = raw[fmt.columns["label"]].dropna().astype(str).unique().tolist() if "label" in fmt.columns else []
    frame = fmt.to_canonical(validate(raw, fmt.schema(labels), source=f"{fmt.name} {path}"))
    return frame.loc[frame["label"].notna() & (frame["label"] != "nan"), ["label", *LOG_FEATURES]]


def refit(summary_path: Path, tables: Sequence[Path], min_rows: int = MIN_ROWS,
          shrink_rows: float = SHRINK_ROWS) -> Calibration:
    """Class medians and spreads from the labelled rows of ``tables`` where a class has ``min_rows``,
    else from the v1.0 means; priors and detector split from the summary (see ``glitchrun.data.synthetic``)."""
    summary = read_csv(summary_path, SUMMARY_SCHEMA, what="class summary").set_index("label")
    rows = pd.concat([real_rows(Path(path)) for path in tables], ignore_index=True)
    counts = rows["label"].value_counts()
    left_out = {name: f"{n} real rows, not a class of the summary {summary_path.name}: no prior"
                for name, n in counts.items() if name not in summary.index}
    calibrated = [name for name in summary.index if counts.get(name, 0) >= min_rows]
    uncalibrated = {name: f"{counts.get(name, 0)} real rows, fewer than {min_rows}: v1.0 means, pooled spread"
                    for name in summary.index if name not in calibrated}
    if not calibrated:
        raise ValueError(f"no class of {summary_path.name} has {min_rows} labelled real rows in {list(map(str, tables))}")

    rows = rows[rows["label"].isin(calibrated)]
    logs = pd.DataFrame(np.log(rows[list(LOG_FEATURES)].to_numpy(dtype=np.float64)), columns=list(LOG_FEATURES),
                        index=rows["label"].to_numpy(dtype=object))
    groups = logs.groupby(level=0)
    within = logs - groups.transform("mean")
    pooled_sd = np.sqrt((within**2).sum() / (len(within) - groups.ngroups)).to_numpy()
    # ln amplitude as a linear function of the other ln features, for classes known only by v1.0 means
    pooled = np.corrcoef(within.to_numpy().T)
    design = np.column_stack([np.ones(len(logs)), logs[list(SUMMARY_MEANS)].to_numpy()])
    amplitude, *_ = np.linalg.lstsq(design, logs["amplitude"].to_numpy(), rcond=None)

    upper = np.triu_indices(len(LOG_FEATURES), 1)
    shapes = {}
    for name, row in summary.iterrows():
        if name in calibrated:
            centre, sd = groups.mean().loc[name].to_numpy(), np.maximum(groups.std(ddof=1).loc[name].to_numpy(),
                                                                        MIN_LOG_SD)
            n = int(counts[name])
            own = np.corrcoef(logs.loc[[name]].to_numpy().T)
            own = np.where(np.isnan(own), pooled, own)  # a feature constant within the class: no correlation of its own
            correlation = (n * own + shrink_rows * pooled) / (n + shrink_rows)
        else:
            sd, correlation = pooled_sd, pooled
            centre = np.log(row[list(SUMMARY_MEANS.values())].to_numpy(dtype=np.float64)) - sd[:-1] ** 2 / 2
            centre = np.append(centre, amplitude[0] + amplitude[1:] @ centre)
        shapes[str(name)] = Shape(int(row["n_H1"]), int(row["n_L1"]), significant(np.exp(centre), 4),
                                  rounded(sd, 3), int(counts.get(name, 0)) if name in calibrated else 0,
                                  rounded(correlation[upper], 4))
        shapes[str(name)].cholesky()  # raises now, not at the first draw, if rounding broke positive-definiteness
    return Calibration(Fit(shapes), uncalibrated, left_out)


def rounded(values: Sequence[float] | np.ndarray, decimals: int) -> tuple[float, ...]:
    """Plain Python floats, rounded as the stored table keeps them."""
    return tuple(round(float(v), decimals) for v in values)


def significant(values: np.ndarray, digits: int) -> tuple[float, ...]:
    """Plain Python floats to ``digits`` significant digits (amplitudes are ~1e-21, frequencies ~1e3)."""
    return tuple(float(f"{float(v):.{digits}g}") for v in values)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glitchrun.data.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--refit", type=Path, required=True, metavar="FOLDER",
                        help=f"folder holding {SUMMARY_FILE} (and {O3A_FILE}, the real rows unless --table is given)")
    parser.add_argument("--table", type=Path, action="append", metavar="CSV",
                        help="a real labelled Gravity Spy table (v1.0 or O3 catalogue format); repeat for several")
    parser.add_argument("--shrink-rows", type=float, default=SHRINK_ROWS,
                        help=f"pseudo-rows of the pooled correlation in each class's (default {SHRINK_ROWS:g})")
    parser.add_argument("--min-rows", type=int, default=MIN_ROWS,
                        help=f"fewest real rows of a class to calibrate it (default {MIN_ROWS})")
    args = parser.parse_args(argv)
    if args.min_rows < 2:
        parser.error(f"--min-rows must be at least 2 (a spread needs two rows), got {args.min_rows}")
    if not args.shrink_rows > 0:
        parser.error(f"--shrink-rows must be positive (the pooled correlation keeps each class's invertible), "
                     f"got {args.shrink_rows}")
    try:
        calibration = refit(args.refit / SUMMARY_FILE, args.table or [args.refit / O3A_FILE], args.min_rows,
                            args.shrink_rows)
    except (CsvError, ValueError, OSError) as err:
        sys.exit(f"calibrate: {err}")
    print(calibration.fit.source())
    for note in calibration.notes():
        print(note, file=sys.stderr)


if __name__ == "__main__":
    main()
