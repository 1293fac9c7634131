"""gwpy's Q transform as it was when glitchrun's was made to reproduce it, stored for four real O3 glitches.

glitchrun whitens with gwpy and reproduces gwpy's tiling, interpolation and loudest-plane rule itself, so a
gwpy release that changes any of them would change the images volunteers see, or quietly make glitchrun's
transform disagree with the one it claims to be. pyproject.toml caps gwpy below its next major version; these
tests are what a maintainer runs before moving that cap: gwpy today, and glitchrun, must still give the stored
energies (``data/gwpy_q_transform.npz``: a 1 s, 24 x 20 grid of each glitch, float32, about 12 KB, made by
``write_fixture`` with gwpy 4.1.0 from ``../shared/data/o3_glitch_strain_examples.npz``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from glitchrun.images.qscan import q_transform
from glitchrun.images.strain import NpzStrain

FIXTURE = Path(__file__).parent / "data" / "gwpy_q_transform.npz"
#: a Blip, a Whistle, a Scattered_Light and a Light_Modulation (loud up to the top of the band)
EXAMPLES = ("o3strain-2", "o3strain-44", "o3strain-26", "o3strain-6")
#: gwpy's q_transform as glitchrun's images use it (Gravity Spy's Q and frequency ranges, a 0.5 s search)
SETTINGS = {"qrange": (4, 64), "frange": (10, 2048), "gps": 0, "search": 0.5, "outseg": (-0.5, 0.5), "tres": 0.05,
            "fres": 24, "logf": True}


def gwpy_q_transform(strain: NpzStrain, cid: str):
    from gwpy.timeseries import TimeSeries

    segment = strain.segment(cid, {})
    series = TimeSeries(segment.data, sample_rate=segment.sample_rate, t0=-segment.centre)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gwpy warns that 2048 Hz is capped for 4096 Hz data
        return series.q_transform(**SETTINGS)


def write_fixture(shared_data: Path, path: Path = FIXTURE) -> None:
    """Store gwpy's energies, times, frequencies and Q of each example (run once, with the gwpy of record)."""
    strain = NpzStrain(shared_data / "o3_glitch_strain_examples.npz")
    arrays = {}
    for cid in EXAMPLES:
        gram = gwpy_q_transform(strain, cid)
        arrays |= {f"{cid}.energy": gram.value.T.astype(np.float32), f"{cid}.times": gram.times.value,
                   f"{cid}.frequencies": gram.frequencies.value, f"{cid}.q": np.float64(gram.q)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def stored() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.fixture(scope="module")
def strain(shared_data: Path) -> NpzStrain:
    return NpzStrain(shared_data / "o3_glitch_strain_examples.npz")


@pytest.mark.parametrize("cid", EXAMPLES)
def test_gwpy_still_gives_the_stored_q_transform(stored, strain: NpzStrain, cid: str):
    gram = gwpy_q_transform(strain, cid)
    assert gram.q == pytest.approx(float(stored[f"{cid}.q"])), "gwpy picks another Q plane: re-check glitchrun's"
    np.testing.assert_allclose(gram.frequencies.value, stored[f"{cid}.frequencies"], rtol=1e-9)
    energy = stored[f"{cid}.energy"]
    np.testing.assert_allclose(gram.value.T, energy, rtol=0, atol=1e-4 * energy.max(),
                               err_msg="gwpy's energies changed: check glitchrun.images.qscan against them")


@pytest.mark.parametrize("cid", EXAMPLES)
def test_glitchrun_gives_the_stored_q_transform(stored, strain: NpzStrain, cid: str):
    plane = q_transform(strain.segment(cid, {}), qrange=SETTINGS["qrange"], frange=SETTINGS["frange"],
                        search=SETTINGS["search"], shown=SETTINGS["outseg"])
    energy = stored[f"{cid}.energy"]
    assert plane.q == pytest.approx(float(stored[f"{cid}.q"]))
    ours = plane.grid(stored[f"{cid}.times"], stored[f"{cid}.frequencies"])
    np.testing.assert_allclose(ours, energy, rtol=0, atol=1e-4 * energy.max())
