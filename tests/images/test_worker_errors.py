"""What goes wrong while a Q-scan worker process reads strain comes back as the user's error it is: its type,
its message (naming the file and the candidate) and its verdict (a check of glitchrun's, not a bug) survive
the trip from the worker, though the traceback that would tell where it was raised stays behind. A bug in a
library stays a bug. Two real worker processes (``n_jobs=2``) draw every batch here.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from glitchrun.console import user_message
from glitchrun.errors import PACKAGE_DIR, is_check, message, portable, raised_in
from glitchrun.images.qscan import MissingStrainError, QScanImages
from glitchrun.images.strain import FileStrain, StrainUnreachable, SyntheticStrain, write_gwosc_hdf5

START = 1238200000
NAME = f"H-H1_GWOSC_O3a_4KHZ_R1-{START}-42.hdf5"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A GWOSC-format file of three real H1 glitches (42 s), and broken variants of it, each alone in a folder."""
    root = tmp_path_factory.mktemp("strain")
    examples = np.load(shared_data / "o3_glitch_strain_examples.npz")
    (root / "good").mkdir()
    write_gwosc_hdf5(root / "good" / NAME, np.concatenate(list(examples["strain"][:3])).astype(np.float64), "H1",
                     START, 4096)
    for folder in ("truncated", "zero_rate", "nan"):
        (root / folder).mkdir()
        shutil.copy(root / "good" / NAME, root / folder / NAME)
    with open(root / "truncated" / NAME, "r+b") as h5:
        h5.truncate(500_000)
    with h5py.File(root / "zero_rate" / NAME, "a") as h5f:
        h5f["strain/Strain"].attrs["Xspacing"] = 0.0
    with h5py.File(root / "nan" / NAME, "a") as h5f:
        h5f["strain/Strain"][4096 * 20:4096 * 22] = np.nan  # no data around the second glitch
    (root / "folder" / NAME).mkdir(parents=True)
    return root


def batch(*times: float) -> pd.DataFrame:
    return pd.DataFrame({"ifo": "H1", "event_time": [START + t for t in times]},
                        index=pd.Index([f"c{i}" for i in range(len(times))], name="id"))


def draw(strain: FileStrain, frame: pd.DataFrame, out: Path, **kwargs) -> BaseException:
    images = QScanImages(strain=strain, durations=[1.0], size=(160, 120), n_jobs=2, progress=False, **kwargs)
    with pytest.raises(Exception) as failure:
        images.render(frame, out)
    return failure.value


#: defect -> (the source, the batch, what the user's line says)
DEFECTS = {
    "truncated file": (lambda f: FileStrain(pad=7, pattern=f"{f}/truncated/*"), batch(7, 21),
                       ["cannot read the strain at GPS", "truncated file"]),
    "GPS time outside the file": (lambda f: FileStrain(pad=7, path=str(f / "good" / NAME)), batch(7, 400),
                                  ["does not cover requested interval", "candidate 'c1'"]),
    "missing channel": (lambda f: FileStrain(pad=7, path=str(f / "good" / NAME), channel="H1:NO-SUCH-CHANNEL"),
                        batch(7), ["cannot read H1:NO-SUCH-CHANNEL", "doesn't exist"]),
    "a folder named like a strain file": (lambda f: FileStrain(pad=7, pattern=f"{f}/folder/*"), batch(7),
                                          [f"folder/{NAME}"]),
    "sample rate 0": (lambda f: FileStrain(pad=7, pattern=f"{f}/zero_rate/*"), batch(7),
                      ["its strain/Strain has Xspacing 0.0 s, so no sample rate"]),
    "no data (NaN) around the glitch": (lambda f: FileStrain(pad=7, pattern=f"{f}/nan/*"), batch(7, 21),
                                        ["8192 of 57344 strain samples are NaN or infinite", "candidate 'c1'"]),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_strain_problem_in_a_worker_comes_back_as_one_line(files: Path, tmp_path: Path, defect: str) -> None:
    source, frame, expected = DEFECTS[defect]
    err = draw(source(files), frame, tmp_path / "out")
    assert type(err) is ValueError
    assert not raised_in(err, PACKAGE_DIR), "raised in this process, not in a worker"
    assert is_check(err)
    line = user_message(err)
    assert line is not None and "\n" not in line and "while drawing the Q-scan of candidate" in line, line
    for text in expected:
        assert text in line, f"{text!r} not in {line}"


def test_files_strain_reads_gwosc_hdf5_with_its_defaults_and_records_the_file_name(files: Path, tmp_path: Path):
    images = QScanImages(strain=FileStrain(pad=7, pattern=f"{files}/good/*"), durations=[1.0], size=(160, 120),
                         n_jobs=2, progress=False)
    drawn = images.render(batch(7, 21, 35), tmp_path / "out")
    assert list(drawn["strain_source"]) == ["file"] * 3 and list(drawn["strain_file"]) == [NAME] * 3
    assert list(drawn["sample_rate"]) == [4096.0] * 3


def test_a_bug_in_a_worker_stays_a_bug(tmp_path: Path) -> None:
    """numpy failing on a synthetic series of -1 s is no mistake of the user's input."""
    frame = pd.DataFrame({"ifo": ["H1"], "snr": [20.0]}, index=pd.Index(["syn-0"], name="id"))
    images = QScanImages(durations=[1.0], size=(160, 120), n_jobs=2, progress=False,
                         synthetic=SyntheticStrain(duration=-1), data_loader="glitchrun.data.loaders.SyntheticData")
    with pytest.raises(Exception) as failure:
        images.render(frame, tmp_path / "out")
    assert not is_check(failure.value) and user_message(failure.value) is None


def test_glitchruns_errors_survive_pickle_and_others_cross_as_their_type_and_message() -> None:
    for err in (MissingStrainError(["a", "b"], 5, "gwosc"), StrainUnreachable("gwosc.org", "ConnectionError: x", 3)):
        back = pickle.loads(pickle.dumps(portable(err)))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__

    class Odd(ValueError):
        def __init__(self, code: int, why: str) -> None:
            super().__init__(f"{code}: {why}")

    try:
        raise Odd(7, "no such segment")
    except Odd as raised:
        err = raised
    stand_in = pickle.loads(pickle.dumps(portable(err, "while drawing the Q-scan of candidate 'c0'")))
    assert type(stand_in) is RuntimeError
    assert message(stand_in) == "Odd: 7: no such segment; while drawing the Q-scan of candidate 'c0'"
    assert not is_check(stand_in)  # raised by this test, not by glitchrun: no more the user's after the trip


def test_n_jobs_0_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="images.n_jobs must be a number of worker processes"):
        QScanImages(n_jobs=0)
