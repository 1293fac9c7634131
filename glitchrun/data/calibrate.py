"""Fit the synthetic generator (``glitchrun.data.synthetic.FIT``) to real Gravity Spy tables.

    python -m glitchrun.data.calibrate --refit ../shared/data            # the shared v1.0 summary + O3a rows
    python -m glitchrun.data.calibrate --refit ../shared/data --table my_glitches.csv --min-rows 20
    python -m glitchrun.data.calibrate --refit ../shared/data --table my_glitches.csv --kernel  # a mode per row

prints the new ``FIT`` as Python source and, on stderr, the classes it could not calibrate from real
rows (too few of them: v1.0 means and pooled spread instead), the real classes it left out (not in the
summary, so without a prior) and the classes it gave two modes (``two_modes``). It lives apart from the
generator because it reads real tables through ``glitchrun.data.loaders``, which itself draws synthetic
candidates: imports go one way (calibrate -> loaders -> synthetic).
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
from glitchrun.data.synthetic import (
    FIT,
    LOG_FEATURES,
    O3A_FILE,
    SUMMARY_FILE,
    SUMMARY_MEANS,
    V1_MEANS,
    Fit,
    Mode,
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
#: fewest labelled rows of a class to take its centre and spread from them
MIN_ROWS = 5
#: pseudo-rows of the pooled correlation each class's own correlation is shrunk towards (see
#: ``glitchrun.data.synthetic``); 10 real rows of a class then weigh 10 : 3
SHRINK_ROWS = 3.0
#: lowest ln-space spread kept: Omicron pins some features (real Whistles' central frequency sits at
#: 3,999 Hz, sd 0.006 in ln), and a class that narrow would be a spike no classifier could miss
MIN_LOG_SD = 0.05
#: fewest real rows in each of a class's two modes (see ``two_modes``)
MODE_ROWS = 3
#: narrowest empty gap in ln central frequency between a class's two modes: a factor e (2.7) with no row
MODE_GAP = 1.0


@dataclass(frozen=True)
class Calibration:
    """A refit and what it could not do: class -> reason."""

    fit: Fit
    uncalibrated: dict[str, str]
    left_out: dict[str, str]
    two_modes: dict[str, str]

    def notes(self) -> list[str]:
        """One line per class the real rows did not calibrate, left out, or gave two modes."""
        return ([f"not calibrated: {name} ({why})" for name, why in self.uncalibrated.items()]
                + [f"left out: {name} ({why})" for name, why in self.left_out.items()]
                + [f"two modes: {name} ({how})" for name, how in self.two_modes.items()])


def two_modes(log_central: np.ndarray, mode_rows: int = MODE_ROWS, gap: float = MODE_GAP) -> np.ndarray | None:
    """Which of a class's rows belong to its upper mode (a boolean mask), or ``None`` if one mode fits.

    The rule: sort the rows' ln central frequency and take the widest gap between neighbours that leaves
    at least ``mode_rows`` rows on each side; the class has two modes if that gap is at least ``gap``
    (no row of the class within a factor e of central frequency between them). Central frequency because
    the modes are Omicron's two kinds of tile (see ``glitchrun.data.synthetic``; bandwidth follows it). An
    explicit split rather than ``sklearn.mixture.GaussianMixture``: with 10 rows a class (3 in a mode) EM's
    full covariances are singular, its answer depends on the k-means start and BIC cannot choose between
    one and two components reliably. The gap is compared with no within-mode spread on purpose: with 3 to 7
    rows a mode, one stray row sets that spread (Light_Modulation's 33 Hz tile beside its 540 and 658 Hz
    ones), while the empty gap does not depend on it. On the O3a rows the gaps split cleanly: 0.85-0.94 for
    the widest classes kept whole (Koi_Fish, Paired_Doves, Repeating_Blips), 1.14-5.1 for those split."""
    values = np.sort(np.asarray(log_central, dtype=np.float64))
    if len(values) < 2 * mode_rows:
        return None
    gaps = np.diff(values)[mode_rows - 1:len(values) - mode_rows]  # gap i: after the (mode_rows + i)-th row
    widest = int(np.argmax(gaps))
    if gaps[widest] < gap:
        return None
    return np.asarray(log_central) > values[mode_rows - 1 + widest]


def real_rows(path: Path) -> pd.DataFrame:
    """The labelled rows of a real Gravity Spy table (v1.0 or O3 catalogue format): label + ``LOG_FEATURES``."""
    raw = read_csv(path, what="Gravity Spy metadata")
    fmt = detect_format(list(raw.columns), path)
    missing = [fmt.columns[name] for name in LOG_FEATURES if fmt.columns[name] not in raw.columns]
    if missing:
        raise CsvError(f"{fmt.name} {path}: calibration needs the feature columns {missing}")
    labels = raw[fmt.columns["label"]].dropna().astype(str).unique().tolist() if "label" in fmt.columns else []
    frame = fmt.to_canonical(validate(raw, fmt.schema(labels), source=f"{fmt.name} {path}"))
    return frame.loc[frame["label"].notna() & (frame["label"] != "nan"), ["label", "ifo", *LOG_FEATURES]]


def refit(summary_path: Path, tables: Sequence[Path], min_rows: int = MIN_ROWS,
          shrink_rows: float = SHRINK_ROWS, own_detectors: bool = False, kernel: bool = False) -> Calibration:
    """Class medians and spreads from the labelled rows of ``tables`` where a class has ``min_rows``,
    else from the v1.0 means; priors and detector split from the summary (see ``glitchrun.data.synthetic``)."""
    summary = read_csv(summary_path, SUMMARY_SCHEMA, what="class summary").set_index("label")
    rows = pd.concat([real_rows(Path(path)) for path in tables], ignore_index=True)
    return refit_rows(rows, summary, min_rows, shrink_rows, own_detectors,
                      source=f"{summary_path.name} and {list(map(str, tables))}", kernel=kernel)


def v1_summary() -> pd.DataFrame:
    """The v1.0 class summary as ``refit_rows`` reads it (index label; n_H1, n_L1 and the class means), from the
    figures the package keeps (``FIT``'s detector counts, ``V1_MEANS``): a campaign refits with no files."""
    return pd.DataFrame([{"label": name, "n_H1": shape.n_h1, "n_L1": shape.n_l1,
                          **dict(zip(SUMMARY_MEANS.values(), V1_MEANS[name], strict=True))}
                         for name, shape in FIT.shapes.items()]).set_index("label")


def refit_rows(rows: pd.DataFrame, summary: pd.DataFrame | None = None, min_rows: int = MIN_ROWS,
               shrink_rows: float = SHRINK_ROWS, own_detectors: bool = False,
               source: str = "the labelled rows", kernel: bool = False) -> Calibration:
    """``refit`` on labelled rows already read (columns ``label``, ``LOG_FEATURES`` in natural units and, for
    ``own_detectors``, ``ifo``) against ``summary`` (default: ``v1_summary()``).

    ``kernel``: draw each calibrated class as a smoothed bootstrap of its own rows (``kernel_modes``) instead
    of one log-normal (or two modes): the user's glitches as they are, not as a log-normal would have them.

    ``own_detectors``: draw only the detectors the rows come from (all of a class's v1.0 count goes to H1 when
    every row is H1): a campaign on one detector's glitches should not learn the v1.0 detector split of its
    classes (v1.0 Whistles are 99 % L1; O3a Hanford ones are all H1). With both detectors, v1.0's split stays.
    """
    summary = v1_summary() if summary is None else summary
    counts = rows["label"].value_counts()
    left_out = {name: f"{n} real rows, not a class of the class summary: no prior"
                for name, n in counts.items() if name not in summary.index}
    calibrated = [name for name in summary.index if counts.get(name, 0) >= min_rows]
    uncalibrated = {name: f"{counts.get(name, 0)} real rows, fewer than {min_rows}: v1.0 means, pooled spread"
                    for name in summary.index if name not in calibrated}
    detectors = set(rows["ifo"]) & {"H1", "L1"} if own_detectors else set()

    # the spread and correlation within classes, pooled over every class of the summary with two rows or more
    # (a class's own centre needs min_rows; its deviations from its mean count from two rows on)
    rows = rows[rows["label"].isin(summary.index)]
    logs = pd.DataFrame(np.log(rows[list(LOG_FEATURES)].to_numpy(dtype=np.float64)), columns=list(LOG_FEATURES),
                        index=rows["label"].to_numpy(dtype=object))
    groups = logs.groupby(level=0)
    within = logs - groups.transform("mean")
    if len(within) - groups.ngroups < 1:
        raise ValueError(f"calibration needs two labelled rows of one class of the class summary at least, "
                         f"in {source}")
    pooled_sd = np.sqrt((within**2).sum() / (len(within) - groups.ngroups)).to_numpy()
    # ln amplitude as a linear function of the other ln features, for classes known only by v1.0 means
    pooled = np.corrcoef(within.to_numpy().T)
    design = np.column_stack([np.ones(len(logs)), logs[list(SUMMARY_MEANS)].to_numpy()])
    amplitude, *_ = np.linalg.lstsq(design, logs["amplitude"].to_numpy(), rcond=None)

    upper = np.triu_indices(len(LOG_FEATURES), 1)
    shapes, split = {}, {}
    for name, row in summary.iterrows():
        modes: tuple[Mode, ...] = ()
        if name in calibrated:
            own_rows = logs.loc[[name]]
            n = len(own_rows)
            centre, sd = own_rows.mean().to_numpy(), np.maximum(own_rows.std(ddof=1).to_numpy(), MIN_LOG_SD)
            mode = two_modes(own_rows["central_frequency"].to_numpy())
            mode = np.zeros(n, dtype=int) if mode is None else mode.astype(int)
            by_mode = own_rows.groupby(mode)
            # correlation and spread within the modes (within the class when it has one)
            within_mode = own_rows - by_mode.transform("mean")
            own = np.corrcoef(within_mode.to_numpy().T)
            own = np.where(np.isnan(own), pooled, own)  # a feature constant within the class: no correlation of its own
            correlation = (n * own + shrink_rows * pooled) / (n + shrink_rows)
            if by_mode.ngroups == 2:
                within_var = (within_mode**2).sum().to_numpy() / (n - 2)
                modes = tuple(mode_shape(rows, within_var, shrink_rows) for _, rows in by_mode)
                low, high = (np.exp(rows["central_frequency"]) for _, rows in by_mode)
                split[str(name)] = (f"central frequency {low.min():.0f}-{low.max():.0f} Hz: {len(low)} rows, "
                                    f"{high.min():.0f}-{high.max():.0f} Hz: {len(high)} rows")
            if kernel:
                spread = sd if by_mode.ngroups == 1 else np.maximum(np.sqrt(within_var), MIN_LOG_SD)
                modes = kernel_modes(own_rows, mode, spread)
        else:
            sd, correlation = pooled_sd, pooled
            centre = np.log(row[list(SUMMARY_MEANS.values())].to_numpy(dtype=np.float64)) - sd[:-1] ** 2 / 2
            centre = np.append(centre, amplitude[0] + amplitude[1:] @ centre)
        n_h1, n_l1 = int(row["n_H1"]), int(row["n_L1"])
        if len(detectors) == 1:
            n_h1, n_l1 = (n_h1 + n_l1, 0) if detectors == {"H1"} else (0, n_h1 + n_l1)
        shapes[str(name)] = Shape(n_h1, n_l1, significant(np.exp(centre), 4),
                                  rounded(sd, 3), int(counts.get(name, 0)) if name in calibrated else 0,
                                  rounded(correlation[upper], 4), modes)
        shapes[str(name)].cholesky()  # raises now, not at the first draw, if rounding broke positive-definiteness
    return Calibration(Fit(shapes), uncalibrated, left_out, split)


def kernel_modes(rows: pd.DataFrame, mode: np.ndarray, spread: np.ndarray) -> tuple[Mode, ...]:
    """A class as a smoothed bootstrap of its rows (ln features; ``mode``: each row's mode, 0 or 1): a mode
    per row, a log-normal of ``spread`` (the within-mode ln sd) times Scott's bandwidth ``n^(-1/(d+4))``
    around it, the rows first drawn towards their mode's mean by ``1/sqrt(1 + h^2)`` so that the class keeps
    its mean and spread (Silverman 1986, "Density estimation", section 6.4.1). The kernel's correlation is the
    class's. Skewed, heavy-tailed or clumped classes keep their shape, which a log-normal fit evens out."""
    n, dimensions = rows.shape
    bandwidth = n ** (-1 / (dimensions + 4))
    shrink = 1 / np.sqrt(1 + bandwidth**2)
    centres = rows.groupby(mode).transform("mean").to_numpy()
    kernel_sd = rounded(bandwidth * shrink * spread, 3)
    return tuple(Mode(1, significant(np.exp(centre + (row - centre) * shrink), 4), kernel_sd)
                 for row, centre in zip(rows.to_numpy(), centres, strict=True))


def mode_shape(rows: pd.DataFrame, within_var: np.ndarray, shrink_rows: float) -> Mode:
    """One mode of a two-mode class from its rows (ln features): their mean, and their spread shrunk
    towards the class's within-mode spread (``within_var``, a variance) by ``shrink_rows`` pseudo-rows.
    A mode has as few as 3 rows, whose spread alone is too noisy (Light_Modulation's upper mode: 0.19 in ln
    central frequency from 7 rows, its lower one 1.67 from 3). The means are the rows' own: shrinking them
    towards the class's would pull the two tiles back together, which is what the modes are for."""
    n = len(rows)
    var = ((n - 1) * rows.var(ddof=1).to_numpy() + shrink_rows * within_var) / (n - 1 + shrink_rows)
    return Mode(n, significant(np.exp(rows.mean().to_numpy()), 4), rounded(np.maximum(np.sqrt(var), MIN_LOG_SD), 3))


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
    parser.add_argument("--own-detectors", action="store_true",
                        help="draw only the detectors the real rows come from (default: the v1.0 split)")
    parser.add_argument("--kernel", action="store_true",
                        help="draw each calibrated class as a smoothed bootstrap of its own rows (a mode per row) "
                             "instead of a log-normal: the closest to the user's glitches (default: log-normal)")
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
                            args.shrink_rows, args.own_detectors, kernel=args.kernel)
    except (CsvError, ValueError, OSError) as err:
        sys.exit(f"calibrate: {err}")
    print(calibration.fit.source())
    for note in calibration.notes():
        print(note, file=sys.stderr)


if __name__ == "__main__":
    main()
