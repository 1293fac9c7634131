"""Synthetic glitch candidates calibrated on real Gravity Spy glitches.

Simulated campaigns and tests need many candidates with known ground truth and no data files, so the
package keeps a few fitted numbers (``FIT``) and draws candidates from them. Each class is a log-normal
in the six measured features (``LOG_FEATURES``): per class a median and a standard deviation of each ln
feature and a correlation between them.

- class medians and spreads: from real labelled rows where a class has at least ``min_rows`` of them
  (today the 170 O3a Hanford rows, 10 per class, SNR > 15): the mean and standard deviation of each ln
  feature. The v1.0 summary holds class *means* of heavy-tailed features, which overstate the typical
  glitch (Extremely_Loud's mean duration is 8.2 s, real ones last 2.4-4.5 s), so they are used only for
  classes without real rows, turned into medians consistently: median = mean x exp(-sd^2 / 2), sd the
  pooled within-class spread; their amplitude median comes from a least-squares fit of ln amplitude on
  the other five ln features over the real rows;
- the within-class correlation of each calibrated class: its real rows' correlation shrunk towards the one
  pooled over all calibrated classes (regularised discriminant analysis, Friedman 1989: ``shrink_rows``
  pseudo-rows of the pooled matrix). Classes differ in shape (peak frequency and amplitude go together
  at r = -0.87 in Light_Modulation, +0.23 in Koi_Fish), and one shared matrix smeared the classes whose
  shape differs most over their neighbours; 10 rows alone give too noisy a matrix. Uncalibrated classes
  take the pooled one;
- class priors and detector split: the v1.0 per-class H1/L1 counts, or a table given to ``generate``
  (``priors``; O3's live pools are dominated by Scattered_Light and Fast_Scattering, unlike v1.0).

``python -m glitchrun.data.calibrate --refit ../shared/data`` re-derives ``FIT`` (any real table can
be given with ``--table``), prints it as the Python source below and names the classes it could not
calibrate from real rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import logsumexp

#: the features of the v1.0 summary and the column holding their class means
SUMMARY_MEANS = {"peak_frequency": "mean_peak_frequency", "central_frequency": "mean_central_freq",
                 "duration": "mean_duration", "bandwidth": "mean_bandwidth", "snr": "mean_snr"}
FEATURES = tuple(SUMMARY_MEANS)
#: every feature drawn jointly log-normal, in the order of ``Shape.median`` and ``Shape.log_sd``
LOG_FEATURES = (*FEATURES, "amplitude")
SUMMARY_FILE = "gravityspy_v1d1_class_summary.csv"
O3A_FILE = "gravityspy_o3a_h1_sample.csv"
#: event times are spread uniformly over O3a (GPS 2019-04-01 15:00 to 2019-10-01 15:00 UTC)
O3A_START, O3A_END = 1238166018.0, 1253977218.0


class Shape(NamedTuple):
    """One class: v1.0 detector counts, the median and ln-space spread of ``LOG_FEATURES``, how many real
    rows they were calibrated on (0: v1.0 means, pooled spread and correlation) and the correlation of the
    ln features (its upper triangle, row by row)."""

    n_h1: int
    n_l1: int
    median: tuple[float, ...]
    log_sd: tuple[float, ...]
    rows: int
    correlation: tuple[float, ...]

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor of the class's correlation matrix."""
        matrix = np.eye(len(LOG_FEATURES))
        matrix[np.triu_indices(len(LOG_FEATURES), 1)] = self.correlation
        return np.linalg.cholesky(np.triu(matrix) + np.triu(matrix, 1).T)


@dataclass(frozen=True)
class Fit:
    """Everything the generator draws from; ``glitchrun.data.calibrate.refit`` derives it from real tables."""

    shapes: dict[str, Shape]

    def source(self) -> str:
        """``FIT`` as Python source, to paste below after a refit."""
        lines = ["FIT = Fit({"]
        lines += [f"    {name!r}: Shape({s.n_h1}, {s.n_l1}, {s.median!r}, {s.log_sd!r}, {s.rows},\n"
                  f"        {s.correlation!r}),"
                  for name, s in self.shapes.items()]
        lines += ["})"]
        return "\n".join(lines)

    def log_likelihood(self, values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """ln density of each row of ``values`` (``LOG_FEATURES`` in natural units) under each class's
        log-normal, in ln-feature space (rows x classes); ``-inf`` for classes the fit does not know."""
        logs = np.log(np.asarray(values, dtype=np.float64))
        out = np.full((len(logs), len(classes)), -np.inf)
        for j, name in enumerate(classes):
            if name not in self.shapes:
                continue
            shape = self.shapes[name]
            cholesky = shape.cholesky()
            z = (logs - np.log(shape.median)) / np.array(shape.log_sd)
            white = np.linalg.solve(cholesky, z.T).T
            out[:, j] = -0.5 * (white**2).sum(axis=1) - np.log(shape.log_sd).sum() - np.log(np.diag(cholesky)).sum()
        return out  # the constants shared by all classes are left out: only differences between classes count

    def posterior(self, values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """P(class | features) with equal priors over ``classes``: how alike a glitch looks to each class,
        whatever the classes' frequencies (rows sum to 1; NaN rows where a feature is missing)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, len(LOG_FEATURES))
        known = np.all(np.isfinite(values) & (values > 0), axis=1)
        out = np.full((len(values), len(classes)), np.nan)
        if known.any():
            ll = self.log_likelihood(values[known], classes)
            out[known] = np.exp(ll - logsumexp(ll, axis=1, keepdims=True))
        return out


# Made by `python -m glitchrun.data.calibrate --refit ../shared/data`; do not edit by hand.
FIT = Fit({
    '1080Lines': Shape(327, 1, (950.0, 972.2, 0.7455, 1021.0, 8.039, 1.279e-23), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    '1400Ripples': Shape(0, 81, (1306.0, 606.1, 0.1316, 357.1, 8.591, 8.315e-23), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Air_Compressor': Shape(55, 3, (41.04, 105.1, 0.3596, 122.4, 6.857, 6.244e-22), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Blip': Shape(1453, 368, (161.1, 512.2, 0.2507, 941.0, 25.15, 1.01e-22), (0.464, 0.65, 0.758, 0.698, 0.374, 0.386), 10,
        (0.6833, -0.4132, 0.6672, 0.1123, -0.1137, -0.0776, 0.9983, 0.3248, 0.2046, -0.0543, 0.6095, 0.644, 0.348, 0.2277, 0.8719)),
    'Chirp': Shape(28, 32, (120.6, 86.68, 0.2543, 99.53, 10.72, 1.118e-22), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Extremely_Loud': Shape(266, 181, (66.89, 2757.0, 3.247, 5488.0, 386.1, 2.905e-21), (0.575, 0.341, 0.178, 0.343, 1.14, 0.905), 10,
        (-0.0364, -0.1611, -0.0424, 0.4079, -0.043, 0.293, 0.9988, 0.1444, 0.3921, 0.2966, 0.4163, 0.5532, 0.1476, 0.3931, 0.7644)),
    'Helix': Shape(3, 276, (114.6, 86.36, 0.07894, 70.38, 6.936, 5.135e-22), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Koi_Fish': Shape(517, 189, (114.2, 1195.0, 1.595, 2337.0, 195.9, 9.48e-22), (0.598, 0.944, 0.284, 0.966, 0.803, 0.767), 10,
        (0.4769, -0.3882, 0.4693, 0.4555, 0.0963, -0.0996, 0.9987, 0.431, 0.3069, -0.0918, 0.2832, 0.4559, 0.4385, 0.3136, 0.85)),
    'Light_Modulation': Shape(511, 1, (31.03, 1373.0, 3.281, 2619.0, 81.6, 4.265e-21), (0.767, 1.479, 0.377, 1.597, 0.635, 2.12), 10,
        (-0.0477, 0.0333, -0.0412, 0.3253, -0.753, 0.6749, 0.9983, 0.1443, 0.2498, 0.6802, -0.0231, 0.2729, 0.1479, 0.2415, -0.1412)),
    'Low_Frequency_Burst': Shape(166, 455, (11.12, 1622.0, 3.962, 2874.0, 34.44, 2.631e-19), (0.069, 1.68, 0.349, 2.047, 0.598, 0.689), 10,
        (0.0211, 0.3466, 0.0226, 0.329, -0.2735, 0.3382, 0.9985, 0.2558, 0.3051, 0.3347, 0.7243, 0.4687, 0.2502, 0.2924, 0.7341)),
    'Low_Frequency_Lines': Shape(79, 368, (11.55, 586.1, 3.491, 666.6, 32.59, 3.157e-19), (0.195, 2.696, 0.594, 3.601, 0.658, 1.832), 10,
        (0.2647, 0.5329, 0.2567, -0.3197, -0.8093, 0.6228, 0.9983, 0.1791, -0.1285, 0.6293, 0.1545, -0.3825, 0.196, -0.1197, 0.6493)),
    'No_Glitch': Shape(91, 59, (96.03, 1150.0, 4.15, 1769.0, 16.86, 8.984e-23), (0.225, 1.505, 0.608, 1.897, 0.114, 0.131), 10,
        (0.119, 0.0217, 0.0946, 0.2343, -0.2026, 0.6679, 0.9966, -0.1634, 0.1698, 0.6619, -0.127, 0.1452, -0.1843, 0.1482, 0.5274)),
    'None_of_the_Above': Shape(51, 30, (145.4, 572.6, 2.386, 741.8, 35.7, 2.764e-22), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Paired_Doves': Shape(27, 0, (33.73, 487.5, 2.004, 920.7, 39.17, 6.838e-22), (0.16, 1.175, 0.283, 1.227, 0.404, 0.644), 10,
        (-0.2194, -0.0084, -0.2329, -0.4608, -0.7397, 0.4736, 0.9985, 0.0629, 0.1565, 0.4708, 0.3721, 0.2522, 0.0725, 0.1658, 0.8477)),
    'Power_Line': Shape(273, 176, (63.59, 455.1, 1.826, 656.5, 51.47, 3.677e-22), (0.059, 1.71, 0.588, 2.032, 1.296, 1.459), 10,
        (0.1427, 0.3578, 0.0993, -0.5397, -0.6934, 0.5659, 0.9969, 0.2504, 0.1933, 0.5462, 0.2168, 0.1119, 0.2792, 0.2219, 0.902)),
    'Repeating_Blips': Shape(230, 33, (139.2, 873.0, 0.7193, 1665.0, 22.67, 8.861e-23), (0.339, 1.08, 0.302, 1.122, 0.344, 0.352), 10,
        (0.1866, -0.1255, 0.1829, 0.0749, -0.2545, 0.3305, 0.9987, 0.1227, 0.0488, 0.3398, 0.357, 0.3675, 0.1331, 0.0556, 0.8681)),
    'Scattered_Light': Shape(385, 58, (28.06, 234.7, 2.525, 374.4, 30.02, 1.106e-21), (0.141, 2.081, 0.403, 2.279, 0.45, 0.555), 10,
        (-0.1317, 0.2573, -0.1164, 0.2341, -0.6347, 0.0153, 0.9977, -0.3736, -0.1165, 0.0529, 0.5216, 0.144, -0.3454, -0.1184, 0.4587)),
    'Scratchy': Shape(90, 247, (97.39, 1258.0, 2.129, 2282.0, 46.37, 2.211e-22), (0.166, 1.262, 0.729, 1.405, 1.112, 1.085), 10,
        (0.4505, 0.0892, 0.4349, 0.092, -0.0595, 0.4366, 0.9975, -0.2467, -0.2838, 0.4341, -0.1627, -0.2641, -0.2249, -0.2633, 0.9013)),
    'Tomte': Shape(61, 42, (43.12, 245.7, 1.051, 408.0, 23.13, 2.455e-22), (0.182, 1.698, 0.356, 1.832, 0.317, 0.458), 10,
        (0.1667, -0.3524, 0.1666, -0.0656, -0.6214, 0.2932, 0.9982, 0.2074, 0.0646, 0.2989, 0.6191, 0.6229, 0.2154, 0.0665, 0.7393)),
    'Violin_Mode': Shape(141, 271, (134.3, 941.2, 1.382, 1708.0, 25.52, 2.909e-22), (1.645, 1.776, 0.56, 1.929, 0.419, 0.96), 10,
        (0.7043, 0.4001, 0.6867, -0.0502, -0.6238, 0.6508, 0.9977, 0.0939, -0.4765, 0.6493, 0.3327, -0.204, 0.0983, -0.4653, 0.6467)),
    'Wandering_Line': Shape(42, 0, (570.3, 698.4, 5.306, 848.3, 21.91, 1.353e-23), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Whistle': Shape(2, 297, (695.6, 3999.0, 0.3144, 7889.0, 28.35, 1.762e-22), (0.426, 0.05, 0.783, 0.05, 0.419, 0.366), 10,
        (0.117, -0.5166, -0.0279, -0.4601, -0.138, -0.4232, -0.11, -0.1978, -0.2072, 0.4787, 0.6327, 0.3764, 0.598, 0.6879, 0.7635)),
})


#: the Gravity Spy v1.0 classes, in the order of the v1.0 summary
GRAVITY_SPY_CLASSES: tuple[str, ...] = tuple(FIT.shapes)


def class_weights(names: Sequence[str], fit: Fit, priors: Mapping[str, float] | None) -> np.ndarray:
    """The chance of each of ``names``: ``priors`` (any positive scale) or else the v1.0 counts."""
    if priors is None:
        weights = np.array([fit.shapes[name].n_h1 + fit.shapes[name].n_l1 for name in names], dtype=np.float64)
    else:
        missing = [name for name in names if name not in priors]
        if missing:
            raise ValueError(f"class priors lack {missing}; give 0 to leave a class out")
        weights = np.array([float(priors[name]) for name in names])
    if not (np.all(np.isfinite(weights)) and np.all(weights >= 0) and weights.sum() > 0):
        raise ValueError(f"class priors must be non-negative with a positive sum, got {dict(zip(names, weights))}")
    return weights / weights.sum()


def generate(n: int, seed: int, classes: Sequence[str] | None = None, fit: Fit = FIT,
             priors: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``n`` candidates of ``classes`` (default all), drawn with ``seed``: an ``id`` column, ``ifo``,
    ``event_time``, the six features and ``truth``; vectorised, about 110 bytes a row."""
    names = list(fit.shapes if classes is None else classes)
    unknown = sorted(set(names) - set(fit.shapes))
    if unknown:
        raise ValueError(f"no synthetic shape for classes {unknown}; the generator knows {list(fit.shapes)}")
    shapes = [fit.shapes[name] for name in names]
    counts = np.array([(s.n_h1, s.n_l1) for s in shapes], dtype=np.float64)
    h1_share = np.divide(counts[:, 0], counts.sum(axis=1), out=np.full(len(names), 0.5), where=counts.sum(axis=1) > 0)
    log_median = np.log(np.array([s.median for s in shapes]))
    log_sd = np.array([s.log_sd for s in shapes])

    rng = np.random.default_rng(seed)
    k = rng.choice(len(names), size=n, p=class_weights(names, fit, priors))
    # one float block filled in place (it becomes the frame's, uncopied); rows: event_time, LOG_FEATURES
    floats = ["event_time", *LOG_FEATURES]
    values = np.empty((len(floats), n))
    values[0] = rng.uniform(O3A_START, O3A_END, n)
    logs = values[1:].T
    logs[:] = rng.standard_normal((n, len(LOG_FEATURES)))
    for j, shape in enumerate(shapes):  # one class at a time: no per-row 6 x 6 factor
        rows = np.flatnonzero(k == j)
        logs[rows] = logs[rows] @ shape.cholesky().T
    logs *= log_sd[k]
    logs += log_median[k]
    np.exp(values[1:], out=values[1:])
    is_h1 = rng.random(n) < h1_share[k]

    frame = pd.DataFrame(values.T, columns=floats, copy=False)
    frame.insert(0, "id", "syn" + pd.Series(np.arange(n)).astype("str").str.zfill(len(str(max(n - 1, 0)))))
    frame.insert(1, "ifo", np.where(is_h1, "H1", "L1"))
    frame["truth"] = np.array(names, dtype=object)[k]
    return frame
