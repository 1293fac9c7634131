"""Synthetic glitch candidates shaped like the Gravity Spy v1.0 training set.

Simulated campaigns and tests need many candidates with known ground truth and no data files, so the
package keeps a few fitted numbers (``FIT``) and draws candidates from them:

- class priors and detector split: the v1.0 per-class H1/L1 counts;
- per-class centres: the v1.0 class means of peak frequency, central frequency, duration, bandwidth and
  SNR (arithmetic means, which the log-normal draw reproduces);
- within-class spread, from the 170 real O3a rows (17 classes, 10 each, H1, SNR > 15): the standard
  deviation of each ln feature per class, and one within-class correlation pooled over the 17 classes.
  The 7 v1.0 classes the sample lacks (1080Lines, 1400Ripples, Air_Compressor, Chirp, Helix,
  None_of_the_Above, Wandering_Line) get the pooled standard deviations;
- amplitude (not in the v1.0 summary): a least-squares fit of ln amplitude on the five ln features over
  the O3a rows, plus the per-class (or pooled) spread of its residual.

``python -m glitchrun.data.calibrate --refit ../shared/data`` re-derives ``FIT`` from the shared files and
prints it as the Python source below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

#: the features drawn jointly log-normal (in the order of ``Shape.mean`` and ``Shape.log_sd``) and the column
#: of the v1.0 summary holding their class means
SUMMARY_MEANS = {"peak_frequency": "mean_peak_frequency", "central_frequency": "mean_central_freq",
                 "duration": "mean_duration", "bandwidth": "mean_bandwidth", "snr": "mean_snr"}
FEATURES = tuple(SUMMARY_MEANS)
SUMMARY_FILE = "gravityspy_v1d1_class_summary.csv"
O3A_FILE = "gravityspy_o3a_h1_sample.csv"
#: event times are spread uniformly over O3a (GPS 2019-04-01 15:00 to 2019-10-01 15:00 UTC)
O3A_START, O3A_END = 1238166018.0, 1253977218.0


class Shape(NamedTuple):
    """One class: v1.0 counts and means, O3a log-space spread (``log_sd`` ends with the amplitude residual)."""

    n_h1: int
    n_l1: int
    mean: tuple[float, ...]
    log_sd: tuple[float, ...]


@dataclass(frozen=True)
class Fit:
    """Everything the generator draws from; ``refit`` derives it from the shared files."""

    shapes: dict[str, Shape]
    #: within-class correlation of the ln ``FEATURES``
    correlation: tuple[tuple[float, ...], ...]
    #: ln amplitude = amplitude[0] + amplitude[1:] . ln FEATURES
    amplitude: tuple[float, ...]

    def source(self) -> str:
        """``FIT`` as Python source, to paste below after a refit."""
        lines = ["FIT = Fit(", "    shapes={"]
        lines += [f"        {name!r}: Shape({s.n_h1}, {s.n_l1}, {s.mean!r}, {s.log_sd!r}),"
                  for name, s in self.shapes.items()]
        lines += ["    },", "    correlation=("]
        lines += [f"        {row!r}," for row in self.correlation]
        lines += ["    ),", f"    amplitude={self.amplitude!r},", ")"]
        return "\n".join(lines)


# Made by `python -m glitchrun.data.calibrate --refit ../shared/data`; do not edit by hand.
FIT = Fit(
    shapes={
        '1080Lines': Shape(327, 1, (1111.0, 2961.0, 0.85, 4730.0, 10.2), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        '1400Ripples': Shape(0, 81, (1527.0, 1846.0, 0.15, 1654.0, 10.9), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Air_Compressor': Shape(55, 3, (48.0, 320.0, 0.41, 567.0, 8.7), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Blip': Shape(1453, 368, (199.0, 839.0, 0.27, 1595.0, 22.8), (0.464, 0.65, 0.758, 0.698, 0.374, 0.452)),
        'Chirp': Shape(28, 32, (141.0, 264.0, 0.29, 461.0, 13.6), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Extremely_Loud': Shape(266, 181, (140.0, 2673.0, 8.17, 5311.0, 2416.0), (0.575, 0.341, 0.178, 0.343, 1.14, 0.736)),
        'Helix': Shape(3, 276, (134.0, 263.0, 0.09, 326.0, 8.8), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Koi_Fish': Shape(517, 189, (157.0, 1834.0, 1.75, 3629.0, 139.0), (0.598, 0.944, 0.284, 0.966, 0.803, 0.785)),
        'Light_Modulation': Shape(511, 1, (105.0, 2000.0, 2.34, 3966.0, 34.6), (0.767, 1.479, 0.377, 1.597, 0.635, 1.369)),
        'Low_Frequency_Burst': Shape(166, 455, (16.0, 2611.0, 2.91, 5208.0, 29.9), (0.069, 1.68, 0.349, 2.047, 0.598, 0.267)),
        'Low_Frequency_Lines': Shape(79, 368, (12.0, 2630.0, 3.94, 5243.0, 23.1), (0.195, 2.696, 0.594, 3.601, 0.658, 1.418)),
        'No_Glitch': Shape(91, 59, (183.0, 1601.0, 1.95, 2915.0, 9.3), (0.225, 1.505, 0.608, 1.897, 0.114, 0.577)),
        'None_of_the_Above': Shape(51, 30, (170.0, 1744.0, 2.72, 3436.0, 45.3), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Paired_Doves': Shape(27, 0, (41.0, 1270.0, 0.42, 2505.0, 33.4), (0.16, 1.175, 0.283, 1.227, 0.404, 0.844)),
        'Power_Line': Shape(273, 176, (62.0, 733.0, 0.75, 1367.0, 11.3), (0.059, 1.71, 0.588, 2.032, 1.296, 0.736)),
        'Repeating_Blips': Shape(230, 33, (200.0, 1650.0, 0.31, 3214.0, 29.2), (0.339, 1.08, 0.302, 1.122, 0.344, 0.883)),
        'Scattered_Light': Shape(385, 58, (30.0, 2175.0, 2.61, 4319.0, 16.4), (0.141, 2.081, 0.403, 2.279, 0.45, 1.256)),
        'Scratchy': Shape(90, 247, (153.0, 1223.0, 1.45, 2269.0, 8.6), (0.166, 1.262, 0.729, 1.405, 1.112, 0.615)),
        'Tomte': Shape(61, 42, (47.0, 833.0, 0.73, 1622.0, 16.2), (0.182, 1.698, 0.356, 1.832, 0.317, 1.043)),
        'Violin_Mode': Shape(141, 271, (1673.0, 1742.0, 0.29, 2637.0, 13.4), (1.645, 1.776, 0.56, 1.929, 0.419, 1.708)),
        'Wandering_Line': Shape(42, 0, (667.0, 2127.0, 6.05, 3929.0, 27.8), (0.57, 1.471, 0.494, 1.713, 0.66, 0.972)),
        'Whistle': Shape(2, 297, (1093.0, 2690.0, 0.59, 4788.0, 9.5), (0.426, 0.006, 0.783, 0.006, 0.419, 0.849)),
    },
    correlation=(
        (1.0, 0.255, 0.023, 0.236, 0.089),
        (0.255, 1.0, 0.371, 0.995, 0.093),
        (0.023, 0.371, 1.0, 0.381, 0.226),
        (0.236, 0.995, 0.381, 1.0, 0.105),
        (0.089, 0.093, 0.226, 0.105, 1.0),
    ),
    amplitude=(-47.5896, -1.8662, 4.5052, -0.3517, -3.6094, 0.8039),
)

#: the Gravity Spy v1.0 classes, in the order of the v1.0 summary
GRAVITY_SPY_CLASSES: tuple[str, ...] = tuple(FIT.shapes)


def generate(n: int, seed: int, classes: Sequence[str] | None = None, fit: Fit = FIT) -> pd.DataFrame:
    """``n`` candidates of ``classes`` (default all), drawn with ``seed``: an ``id`` column, ``ifo``,
    ``event_time``, the five features, ``amplitude`` and ``truth``; vectorised, about 110 bytes a row."""
    names = list(fit.shapes if classes is None else classes)
    unknown = sorted(set(names) - set(fit.shapes))
    if unknown:
        raise ValueError(f"no synthetic shape for classes {unknown}; the generator knows {list(fit.shapes)}")
    shapes = [fit.shapes[name] for name in names]
    counts = np.array([(s.n_h1, s.n_l1) for s in shapes], dtype=np.float64)
    totals = counts.sum(axis=1)
    log_sd = np.array([s.log_sd for s in shapes])
    # a log-normal with ln-space (mu, sd) has mean exp(mu + sd^2 / 2): place mu so class means match v1.0
    mu = np.log(np.array([s.mean for s in shapes])) - log_sd[:, :-1] ** 2 / 2

    rng = np.random.default_rng(seed)
    k = rng.choice(len(names), size=n, p=totals / totals.sum())
    # one float block filled in place (it becomes the frame's, uncopied); rows: event_time, FEATURES, amplitude
    floats = ["event_time", *FEATURES, "amplitude"]
    values = np.empty((len(floats), n))
    values[0] = rng.uniform(O3A_START, O3A_END, n)
    logs = values[1:-1].T
    np.matmul(rng.standard_normal((n, len(FEATURES))), np.linalg.cholesky(np.array(fit.correlation)).T, out=logs)
    logs *= log_sd[k, :-1]
    logs += mu[k]
    np.matmul(logs, np.array(fit.amplitude[1:]), out=values[-1])
    values[-1] += fit.amplitude[0] + log_sd[k, -1] * rng.standard_normal(n)
    np.exp(values[1:], out=values[1:])
    is_h1 = rng.random(n) < (counts[:, 0] / totals)[k]

    frame = pd.DataFrame(values.T, columns=floats, copy=False)
    frame.insert(0, "id", "syn" + pd.Series(np.arange(n)).astype("str").str.zfill(len(str(max(n - 1, 0)))))
    frame.insert(1, "ifo", np.where(is_h1, "H1", "L1"))
    frame["truth"] = np.array(names, dtype=object)[k]
    return frame


