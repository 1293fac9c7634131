"""Synthetic glitch candidates calibrated on real Gravity Spy glitches.

Simulated campaigns and tests need many candidates with known ground truth and no data files, so the
package keeps a few fitted numbers (``FIT``) and draws candidates from them. Each class is a log-normal
in the six measured features (``LOG_FEATURES``), or a mixture of two where its real rows show two modes:
per class a median and a standard deviation of each ln feature, a correlation between them and, for a
two-mode class, each mode's share of the rows, medians and spreads.

- class medians and spreads: from real labelled rows where a class has at least ``min_rows`` of them
  (today the 170 O3a Hanford rows, 10 per class, SNR > 15): the mean and standard deviation of each ln
  feature. The v1.0 summary holds class *means* of heavy-tailed features, which overstate the typical
  glitch (Extremely_Loud's mean duration is 8.2 s, real ones last 2.4-4.5 s), so they are used only for
  classes without real rows, turned into medians consistently: median = mean x exp(-sd^2 / 2), sd the
  pooled within-class spread; their amplitude median comes from a least-squares fit of ln amplitude on
  the other five ln features over the real rows;
- two modes (``Mode``): Omicron describes a glitch either by a tile near its peak frequency or by a
  broadband one reaching the top of the search band (central frequency 1.5-4 kHz, bandwidth about twice
  that), so the central frequency and bandwidth of many classes are bimodal (Light_Modulation: 3 rows at
  33-658 Hz, 7 at 2.4-3.8 kHz). One log-normal spreads such a class thinly over its neighbours; where the
  real rows split clearly (``glitchrun.data.calibrate.two_modes``) the class is drawn from two, each with
  its rows' share, their medians and their spreads shrunk towards the class's within-mode spread. The
  class's ``median`` and ``log_sd`` then describe the class as a whole (the class grid draws its median);
- the within-class correlation of each calibrated class (within its modes, which share it): its real rows'
  correlation shrunk towards the one pooled over all calibrated classes (regularised discriminant
  analysis, Friedman 1989: ``shrink_rows`` pseudo-rows of the pooled matrix). Classes differ in shape
  (peak frequency and amplitude go together at r = -0.87 in Light_Modulation, +0.23 in Koi_Fish), and one
  shared matrix smeared the classes whose shape differs most over their neighbours; 10 rows alone give
  too noisy a matrix (3 rows of a mode, a singular one). Uncalibrated classes take the pooled one;
- class priors and detector split: the v1.0 per-class H1/L1 counts, or a table given to ``generate``
  (``priors``; O3's live pools are dominated by Scattered_Light and Fast_Scattering, unlike v1.0).

``python -m glitchrun.data.calibrate --refit ../shared/data`` re-derives ``FIT`` (any real table can
be given with ``--table``), prints it as the Python source below and names the classes it could not
calibrate from real rows and those it gave two modes.
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


class Mode(NamedTuple):
    """One of a class's log-normals (two where its real rows show two modes; one per row in a kernel refit,
    ``glitchrun.data.calibrate.kernel_modes``): how many of the class's real rows it holds (its weight is
    their share), and its median and ln-space spread of ``LOG_FEATURES``."""

    rows: int
    median: tuple[float, ...]
    log_sd: tuple[float, ...]


class Shape(NamedTuple):
    """One class: v1.0 detector counts, the median and ln-space spread of ``LOG_FEATURES``, how many real
    rows they were calibrated on (0: v1.0 means, pooled spread and correlation), the correlation of the
    ln features (its upper triangle, row by row) and, where the real rows show two modes (or a kernel refit
    gives each row its own), the modes drawn instead of the one log-normal (which then only describes the class
    as a whole)."""

    n_h1: int
    n_l1: int
    median: tuple[float, ...]
    log_sd: tuple[float, ...]
    rows: int
    correlation: tuple[float, ...]
    modes: tuple[Mode, ...] = ()

    def cholesky(self) -> np.ndarray:
        """Lower Cholesky factor of the class's correlation matrix."""
        matrix = np.eye(len(LOG_FEATURES))
        matrix[np.triu_indices(len(LOG_FEATURES), 1)] = self.correlation
        return np.linalg.cholesky(np.triu(matrix) + np.triu(matrix, 1).T)

    def components(self) -> list[tuple[float, tuple[float, ...], tuple[float, ...]]]:
        """What the class is drawn from: (weight, median, log_sd) of each log-normal, weights summing to 1."""
        if not self.modes:
            return [(1.0, self.median, self.log_sd)]
        total = sum(mode.rows for mode in self.modes)
        return [(mode.rows / total, mode.median, mode.log_sd) for mode in self.modes]


@dataclass(frozen=True)
class Fit:
    """Everything the generator draws from; ``glitchrun.data.calibrate.refit`` derives it from real tables."""

    shapes: dict[str, Shape]

    def source(self) -> str:
        """``FIT`` as Python source, to paste below after a refit."""
        lines = ["FIT = Fit({"]
        for name, s in self.shapes.items():
            modes = ",\n               ".join(f"Mode({m.rows}, {m.median!r}, {m.log_sd!r})" for m in s.modes)
            modes = f",\n        modes=({modes})" if modes else ""
            lines.append(f"    {name!r}: Shape({s.n_h1}, {s.n_l1}, {s.median!r}, {s.log_sd!r}, {s.rows},\n"
                         f"        {s.correlation!r}{modes}),")
        lines += ["})"]
        return "\n".join(lines)

    def log_likelihood(self, values: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """ln density of each row of ``values`` (``LOG_FEATURES`` in natural units) under each class's
        log-normal (or mixture of two: its modes' densities weighted by their shares), in ln-feature space
        (rows x classes); ``-inf`` for classes the fit does not know."""
        logs = np.log(np.asarray(values, dtype=np.float64))
        out = np.full((len(logs), len(classes)), -np.inf)
        for j, name in enumerate(classes):
            if name not in self.shapes:
                continue
            shape = self.shapes[name]
            cholesky = shape.cholesky()
            log_det = np.log(np.diag(cholesky)).sum()
            each = []
            for weight, median, log_sd in shape.components():
                z = (logs - np.log(median)) / np.array(log_sd)
                white = np.linalg.solve(cholesky, z.T).T
                each.append(np.log(weight) - 0.5 * (white**2).sum(axis=1) - np.log(log_sd).sum() - log_det)
            out[:, j] = logsumexp(each, axis=0)
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
        (0.2299, 0.2185, 0.2298, 0.3702, -0.7454, 0.5598, 0.9986, 0.1133, -0.0556, 0.564, -0.1053, 0.1045, 0.1156, -0.0576, -0.2147),
        modes=(Mode(3, (43.34, 227.3, 2.381, 391.6, 73.43, 1.148e-21), (0.792, 1.248, 0.4, 1.419, 0.527, 1.703)),
               Mode(7, (26.88, 2967.0, 3.765, 5914.0, 85.37, 7.484e-21), (0.766, 0.515, 0.272, 0.579, 0.736, 2.196)))),
    'Low_Frequency_Burst': Shape(166, 455, (11.12, 1622.0, 3.962, 2874.0, 34.44, 2.631e-19), (0.069, 1.68, 0.349, 2.047, 0.598, 0.689), 10,
        (0.0211, 0.3466, 0.0226, 0.329, -0.2735, 0.3382, 0.9985, 0.2558, 0.3051, 0.3347, 0.7243, 0.4687, 0.2502, 0.2924, 0.7341)),
    'Low_Frequency_Lines': Shape(79, 368, (11.55, 586.1, 3.491, 666.6, 32.59, 3.157e-19), (0.195, 2.696, 0.594, 3.601, 0.658, 1.832), 10,
        (0.1907, 0.5542, 0.1356, -0.3824, -0.8113, 0.551, 0.8769, 0.0673, -0.1141, 0.6516, 0.0504, -0.4124, 0.2921, 0.0171, 0.6933),
        modes=(Mode(3, (10.73, 11.88, 1.966, 3.648, 26.84, 4.844e-19), (0.155, 0.149, 0.469, 0.279, 0.714, 1.601)),
               Mode(7, (11.92, 3116.0, 4.466, 6211.0, 35.42, 2.628e-19), (0.221, 0.205, 0.47, 0.225, 0.666, 2.073)))),
    'No_Glitch': Shape(91, 59, (96.03, 1150.0, 4.15, 1769.0, 16.86, 8.984e-23), (0.225, 1.505, 0.608, 1.897, 0.114, 0.131), 10,
        (0.387, 0.0416, 0.3023, 0.2347, -0.2051, 0.3479, 0.9527, -0.3626, -0.3062, 0.2981, -0.1005, -0.0461, -0.4855, -0.4269, 0.5846),
        modes=(Mode(3, (96.49, 137.0, 2.201, 120.6, 17.23, 8.471e-23), (0.244, 0.33, 0.369, 0.481, 0.143, 0.155)),
               Mode(7, (95.83, 2861.0, 5.446, 5595.0, 16.71, 9.213e-23), (0.236, 0.367, 0.486, 0.4, 0.104, 0.117)))),
    'None_of_the_Above': Shape(51, 30, (145.4, 572.6, 2.386, 741.8, 35.7, 2.764e-22), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Paired_Doves': Shape(27, 0, (33.73, 487.5, 2.004, 920.7, 39.17, 6.838e-22), (0.16, 1.175, 0.283, 1.227, 0.404, 0.644), 10,
        (-0.2194, -0.0084, -0.2329, -0.4608, -0.7397, 0.4736, 0.9985, 0.0629, 0.1565, 0.4708, 0.3721, 0.2522, 0.0725, 0.1658, 0.8477)),
    'Power_Line': Shape(273, 176, (63.59, 455.1, 1.826, 656.5, 51.47, 3.677e-22), (0.059, 1.71, 0.588, 2.032, 1.296, 1.459), 10,
        (0.3119, 0.3933, 0.1529, -0.5689, -0.7168, 0.6605, 0.966, 0.1456, 0.0818, 0.5934, 0.1297, 0.0294, 0.2792, 0.219, 0.9024),
        modes=(Mode(5, (63.47, 94.14, 1.398, 100.0, 36.93, 2.672e-22), (0.061, 0.304, 0.562, 0.367, 1.271, 1.433)),
               Mode(5, (63.71, 2200.0, 2.386, 4310.0, 71.73, 5.059e-22), (0.064, 0.531, 0.532, 0.553, 1.374, 1.576)))),
    'Repeating_Blips': Shape(230, 33, (139.2, 873.0, 0.7193, 1665.0, 22.67, 8.861e-23), (0.339, 1.08, 0.302, 1.122, 0.344, 0.352), 10,
        (0.1866, -0.1255, 0.1829, 0.0749, -0.2545, 0.3305, 0.9987, 0.1227, 0.0488, 0.3398, 0.357, 0.3675, 0.1331, 0.0556, 0.8681)),
    'Scattered_Light': Shape(385, 58, (28.06, 234.7, 2.525, 374.4, 30.02, 1.106e-21), (0.141, 2.081, 0.403, 2.279, 0.45, 0.555), 10,
        (0.3912, 0.24, 0.4779, 0.1412, -0.6961, 0.4176, 0.9254, 0.1625, -0.1363, 0.6424, 0.5461, 0.132, 0.3722, -0.1245, 0.452),
        modes=(Mode(6, (28.95, 47.13, 2.632, 64.86, 36.08, 1.175e-21), (0.147, 0.195, 0.49, 0.309, 0.457, 0.521)),
               Mode(4, (26.79, 2610.0, 2.372, 5192.0, 22.78, 1.011e-21), (0.139, 0.2, 0.314, 0.247, 0.324, 0.657)))),
    'Scratchy': Shape(90, 247, (97.39, 1258.0, 2.129, 2282.0, 46.37, 2.211e-22), (0.166, 1.262, 0.729, 1.405, 1.112, 1.085), 10,
        (-0.144, -0.1015, -0.1609, 0.2776, 0.1304, 0.4084, 0.986, -0.2003, -0.2184, 0.3684, -0.0974, -0.2001, -0.1106, -0.1265, 0.9011),
        modes=(Mode(3, (84.64, 214.2, 1.444, 322.8, 73.65, 3.623e-22), (0.143, 0.385, 0.567, 0.526, 1.156, 1.125)),
               Mode(7, (103.4, 2687.0, 2.514, 5275.0, 38.03, 1.789e-22), (0.143, 0.303, 0.79, 0.337, 1.115, 1.073)))),
    'Tomte': Shape(61, 42, (43.12, 245.7, 1.051, 408.0, 23.13, 2.455e-22), (0.182, 1.698, 0.356, 1.832, 0.317, 0.458), 10,
        (-0.0873, -0.4017, -0.0437, -0.1034, -0.639, 0.2509, 0.9889, 0.0527, 0.1048, 0.2549, 0.6071, 0.6306, 0.0834, 0.1008, 0.7471),
        modes=(Mode(7, (42.28, 86.73, 0.9978, 133.4, 22.06, 2.414e-22), (0.171, 0.294, 0.37, 0.378, 0.301, 0.416)),
               Mode(3, (45.16, 2789.0, 1.188, 5541.0, 25.83, 2.555e-22), (0.22, 0.278, 0.362, 0.325, 0.367, 0.589)))),
    'Violin_Mode': Shape(141, 271, (134.3, 941.2, 1.382, 1708.0, 25.52, 2.909e-22), (1.645, 1.776, 0.56, 1.929, 0.419, 0.96), 10,
        (0.1266, -0.1247, 0.1172, 0.3372, 0.4191, 0.5346, 0.9964, 0.4174, 0.1953, 0.5231, 0.5042, 0.3024, 0.3988, 0.1869, 0.8203),
        modes=(Mode(5, (29.5, 222.8, 1.024, 368.6, 27.58, 6.116e-22), (0.278, 1.225, 0.596, 1.399, 0.472, 0.567)),
               Mode(5, (611.7, 3976.0, 1.865, 7919.0, 23.62, 1.384e-22), (0.518, 0.639, 0.353, 0.73, 0.398, 0.608)))),
    'Wandering_Line': Shape(42, 0, (570.3, 698.4, 5.306, 848.3, 21.91, 1.353e-23), (0.56, 1.492, 0.512, 1.751, 0.69, 1.011), 0,
        (0.2463, 0.0133, 0.2257, 0.0936, -0.3602, 0.3819, 0.9947, 0.086, 0.0121, 0.3913, 0.2136, 0.0552, 0.0989, 0.0136, 0.5958)),
    'Whistle': Shape(2, 297, (695.6, 3999.0, 0.3144, 7889.0, 28.35, 1.762e-22), (0.426, 0.05, 0.783, 0.05, 0.419, 0.366), 10,
        (0.117, -0.5166, -0.0279, -0.4601, -0.138, -0.4232, -0.11, -0.1978, -0.2072, 0.4787, 0.6327, 0.3764, 0.598, 0.6879, 0.7635)),
})


#: the Gravity Spy v1.0 classes, in the order of the v1.0 summary
GRAVITY_SPY_CLASSES: tuple[str, ...] = tuple(FIT.shapes)

# The class means of the v1.0 summary (SUMMARY_FILE: the Gravity Spy v1.0 training set, Zenodo 1476551, CC BY 4.0),
# in the order of SUMMARY_MEANS: what a refit on a campaign's own rows (glitchrun.data.calibrate.refit_rows) takes
# for the classes those rows are too few to calibrate, with no files.
V1_MEANS: dict[str, tuple[float, ...]] = {
    '1080Lines': (1111.0, 2961.0, 0.85, 4730.0, 10.2),
    '1400Ripples': (1527.0, 1846.0, 0.15, 1654.0, 10.9),
    'Air_Compressor': (48.0, 320.0, 0.41, 567.0, 8.7),
    'Blip': (199.0, 839.0, 0.27, 1595.0, 22.8),
    'Chirp': (141.0, 264.0, 0.29, 461.0, 13.6),
    'Extremely_Loud': (140.0, 2673.0, 8.17, 5311.0, 2416.0),
    'Helix': (134.0, 263.0, 0.09, 326.0, 8.8),
    'Koi_Fish': (157.0, 1834.0, 1.75, 3629.0, 139.0),
    'Light_Modulation': (105.0, 2000.0, 2.34, 3966.0, 34.6),
    'Low_Frequency_Burst': (16.0, 2611.0, 2.91, 5208.0, 29.9),
    'Low_Frequency_Lines': (12.0, 2630.0, 3.94, 5243.0, 23.1),
    'No_Glitch': (183.0, 1601.0, 1.95, 2915.0, 9.3),
    'None_of_the_Above': (170.0, 1744.0, 2.72, 3436.0, 45.3),
    'Paired_Doves': (41.0, 1270.0, 0.42, 2505.0, 33.4),
    'Power_Line': (62.0, 733.0, 0.75, 1367.0, 11.3),
    'Repeating_Blips': (200.0, 1650.0, 0.31, 3214.0, 29.2),
    'Scattered_Light': (30.0, 2175.0, 2.61, 4319.0, 16.4),
    'Scratchy': (153.0, 1223.0, 1.45, 2269.0, 8.6),
    'Tomte': (47.0, 833.0, 0.73, 1622.0, 16.2),
    'Violin_Mode': (1673.0, 1742.0, 0.29, 2637.0, 13.4),
    'Wandering_Line': (667.0, 2127.0, 6.05, 3929.0, 27.8),
    'Whistle': (1093.0, 2690.0, 0.59, 4788.0, 9.5),
}


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
             priors: Mapping[str, float] | None = None, interleaved: bool = False) -> pd.DataFrame:
    """``n`` candidates of ``classes`` (default all), drawn with ``seed``: an ``id`` column, ``ifo``,
    ``event_time``, the six features and ``truth``; vectorised, about 110 bytes a row.

    ``interleaved``: the classes in turn (one of each in ``classes`` order, then the next of each, ...)
    instead of drawn at their priors, so that any first rows hold the classes equally (to one candidate)."""
    names = list(fit.shapes if classes is None else classes)
    unknown = sorted(set(names) - set(fit.shapes))
    if unknown:
        raise ValueError(f"no synthetic shape for classes {unknown}; the generator knows {list(fit.shapes)}")
    shapes = [fit.shapes[name] for name in names]
    counts = np.array([(s.n_h1, s.n_l1) for s in shapes], dtype=np.float64)
    h1_share = np.divide(counts[:, 0], counts.sum(axis=1), out=np.full(len(names), 0.5), where=counts.sum(axis=1) > 0)
    # one component per one-mode class, two per two-mode class (a fit without modes draws as it always did)
    components = [(j, *component) for j, shape in enumerate(shapes) for component in shape.components()]
    owner = np.array([j for j, *_ in components])
    chance = class_weights(names, fit, priors)[owner] * np.array([weight for _, weight, _, _ in components])
    log_median = np.log(np.array([median for *_, median, _ in components]))
    log_sd = np.array([sd for *_, sd in components])

    rng = np.random.default_rng(seed)
    if interleaved:  # each row's class fixed, its component (mode) drawn at the mode's share of the class
        k = np.arange(n) % len(names)
        share = np.array([weight for _, weight, _, _ in components])
        first = np.searchsorted(owner, np.arange(len(names)))  # components are listed class by class
        upto = np.full((len(names), max(len(shape.components()) for shape in shapes)), np.inf)
        for j in range(len(names)):  # cumulative mode shares of each class, but the last
            upto[j, : np.sum(owner == j) - 1] = share[owner == j].cumsum()[:-1]
        c = first[k] + (rng.random(n)[:, None] >= upto[k]).sum(axis=1)
    else:
        c = rng.choice(len(components), size=n, p=chance / chance.sum())
    k = owner[c]
    # one float block filled in place (it becomes the frame's, uncopied); rows: event_time, LOG_FEATURES
    floats = ["event_time", *LOG_FEATURES]
    values = np.empty((len(floats), n))
    values[0] = rng.uniform(O3A_START, O3A_END, n)
    logs = values[1:].T
    logs[:] = rng.standard_normal((n, len(LOG_FEATURES)))
    for j, shape in enumerate(shapes):  # one class at a time: no per-row 6 x 6 factor
        rows = np.flatnonzero(k == j)
        logs[rows] = logs[rows] @ shape.cholesky().T
    logs *= log_sd[c]
    logs += log_median[c]
    np.exp(values[1:], out=values[1:])
    is_h1 = rng.random(n) < h1_share[k]

    frame = pd.DataFrame(values.T, columns=floats, copy=False)
    frame.insert(0, "id", "syn" + pd.Series(np.arange(n)).astype("str").str.zfill(len(str(max(n - 1, 0)))))
    frame.insert(1, "ifo", np.where(is_h1, "H1", "L1"))
    frame["truth"] = np.array(names, dtype=object)[k]
    return frame
