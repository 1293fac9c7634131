"""Glitch candidates: the ``Candidates`` type every data loader returns, the features, and the loaders.

Loaders (Hydra ``data`` group): ``SyntheticData`` (the default, no files), ``GravitySpyData`` (Gravity Spy
metadata in the v1.0 training-set or the O3 catalogue format) and ``CsvData`` (a user's own feature
table). Each file is read through ``glitchrun.csvio`` with a pandera schema, so a bad row is reported by
file line and column before anything else sees it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from glitchrun.csvio import CsvError, read_csv, validate
from glitchrun.data.synthetic import GRAVITY_SPY_CLASSES, generate

log = logging.getLogger(__name__)

#: measured values that must be positive (they enter the features as log10)
POSITIVE_COLUMNS = ("peak_frequency", "central_frequency", "duration", "bandwidth", "snr", "amplitude")
#: what is known of a candidate besides its class
MEASURED_COLUMNS = ("ifo", "event_time", *POSITIVE_COLUMNS)
CANONICAL_COLUMNS = (*MEASURED_COLUMNS, "label", "truth")
TEXT_COLUMNS = ("ifo", "label", "truth")
IFOS = ("H1", "L1", "V1")
#: classes the Gravity Spy O3 catalogue uses beyond the v1.0 ones (Glanzer et al. 2023)
O3_ADDED_CLASSES = ("Blip_Low_Frequency", "Fast_Scattering")
#: how a source's labels are used: known labels (unlabelled rows form the pool), or hidden ground truth
LABELS_AS = ("label", "truth")


@dataclass
class FeatureSpec:
    """Which columns become the learner's features: log10 of positive measurements, columns taken as they
    are, and one 0/1 column per detector."""

    log10: list[str] = field(default_factory=lambda: list(POSITIVE_COLUMNS))
    linear: list[str] = field(default_factory=list)
    one_hot_ifo: list[str] = field(default_factory=lambda: ["H1", "L1"])

    @property
    def names(self) -> list[str]:
        return [f"log10_{c}" for c in self.log10] + list(self.linear) + [f"ifo_{i}" for i in self.one_hot_ifo]

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The features of ``frame``'s rows: float64, C-contiguous, columns in the order of ``names``."""
        out = np.empty((len(frame), len(self.names)))
        for j, values in enumerate(self.columns(frame)):
            out[:, j] = values  # one column at a time: no second matrix-sized temporary
        return out

    def columns(self, frame: pd.DataFrame) -> Iterator[np.ndarray]:
        """The feature columns one by one, so ``matrix`` never holds more than one beside the result."""
        for c in self.log10:
            yield np.log10(frame[c].to_numpy(dtype=np.float64))
        for c in self.linear:
            yield frame[c].to_numpy(dtype=np.float64)
        for ifo in self.one_hot_ifo:
            yield (frame["ifo"] == ifo).to_numpy(dtype=np.float64)

    def available(self, frame: pd.DataFrame, source: str) -> FeatureSpec:
        """This spec without the columns ``source`` lacks (all NA), saying so in a log line."""
        unknown = [c for c in (*self.log10, *self.linear) if c not in frame.columns]
        if unknown:
            raise ValueError(f"feature columns {unknown} are not columns of {source}")
        absent = {c for c in (*self.log10, *self.linear) if frame[c].isna().all()}
        if absent:
            log.info("%s has no %s: left out of the features", source, ", ".join(sorted(absent)))
        spec = FeatureSpec([c for c in self.log10 if c not in absent], [c for c in self.linear if c not in absent],
                           list(self.one_hot_ifo))
        if not spec.names:
            raise ValueError(f"{source} has none of the feature columns {self.names}")
        return spec


@dataclass
class Candidates:
    """Glitch candidates as docs/architecture.md describes: ``frame`` indexed by unique str ``id`` with the
    canonical columns (plus any feature columns a table brought), the features, the class vocabulary."""

    frame: pd.DataFrame
    feature_spec: FeatureSpec = field(default_factory=FeatureSpec)
    classes: list[str] = field(default_factory=lambda: list(GRAVITY_SPY_CLASSES))

    def __post_init__(self) -> None:
        missing = [c for c in CANONICAL_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"a candidates frame needs the columns {missing}")
        if self.frame.index.name != "id" or not self.frame.index.is_unique:
            raise ValueError("a candidates frame needs a unique index named 'id'")

    @property
    def feature_columns(self) -> list[str]:
        return self.feature_spec.names

    def features(self, ids: Sequence[str] | pd.Index | np.ndarray | None = None) -> np.ndarray:
        """Plain float64 features of ``ids`` (all rows when None), in that order, for scikit-learn."""
        return self.feature_spec.matrix(self.frame if ids is None else self.frame.loc[ids])

    def labelled(self) -> pd.DataFrame:
        """Rows with a known label (the learner's training set)."""
        return self.frame[self.frame["label"].notna()]

    def pool(self) -> pd.DataFrame:
        """Rows without a label (what a round may query)."""
        return self.frame[self.frame["label"].isna()]


def make_candidates(frame: pd.DataFrame, features: FeatureSpec, classes: Sequence[str], source: str) -> Candidates:
    """Wrap a canonical ``frame`` and log the loader's summary line."""
    found = Candidates(frame, features.available(frame, source), list(classes))
    log.info("%s: %d candidates, %d labelled, %d with ground truth, %d classes, features %s", source, len(frame),
             frame["label"].notna().sum(), frame["truth"].notna().sum(), len(found.classes),
             ", ".join(found.feature_columns))
    return found


def canonical(table: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """``table`` (with an ``id`` column) as a candidates frame: index ``id``, the canonical columns in order
    (NA where ``table`` lacks them), typed str or float64, then the ``extra`` columns."""
    frame = table.set_index(table["id"].astype("str").rename("id"))
    frame = frame.reindex(columns=[*CANONICAL_COLUMNS, *[c for c in extra if c not in CANONICAL_COLUMNS]])
    return frame.astype({c: "str" if c in TEXT_COLUMNS else "float64" for c in CANONICAL_COLUMNS})


def use_labels_as(frame: pd.DataFrame, labels_as: str) -> pd.DataFrame:
    """With ``labels_as="truth"``, move the known labels to hidden ground truth (a simulated campaign)."""
    if labels_as == "truth":
        frame["truth"] = frame["label"]
        frame["label"] = np.nan
    return frame


#: prefix of a path inside an installed package, e.g. ``pkg://glitchrun.data.samples/file.csv``
PACKAGE_PREFIX = "pkg://"


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute path: ``~`` expanded, ``pkg://package/file`` inside an installed package,
    anything relative taken from the directory the command was started from (Hydra's original working
    directory, even if a job changed directory)."""
    text = os.fspath(path)
    if text.startswith(PACKAGE_PREFIX):
        package, _, name = text[len(PACKAGE_PREFIX):].partition("/")
        return Path(str(files(package).joinpath(name)))
    resolved = Path(text).expanduser()
    if resolved.is_absolute():
        return resolved
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    return Path(get_original_cwd() if HydraConfig.initialized() else os.getcwd()) / resolved


def existing_path(path: str | os.PathLike[str], what: str) -> Path:
    """``resolve_path(path)``, or ``FileNotFoundError`` in one line saying which setting names it."""
    resolved = resolve_path(path)
    if not resolved.exists():
        raise FileNotFoundError(f"{what}: {path} not found (looked for {resolved}; relative paths are taken "
                                "from the directory glitchrun was started in)")
    return resolved


def given(path: str | os.PathLike[str] | None, what: str) -> Path:
    if path is None:
        raise ValueError("data.path is not set: give the CSV to read, e.g. data.path=glitches.csv")
    return existing_path(path, f"data.path ({what})")


def check_labels_as(labels_as: str) -> None:
    if labels_as not in LABELS_AS:
        raise ValueError(f"labels_as must be one of {LABELS_AS}, not {labels_as!r}")


#: ``inf`` is a float and passes ``gt(0)``: refused where it is read, not where scikit-learn or a GPS lookup meets it
FINITE = pa.Check(np.isfinite, error="is not a finite number")


def canonical_column(name: str, classes: Sequence[str], required: bool = True) -> pa.Column:
    """The schema column for a canonical quantity, whatever a source calls it."""
    if name == "id":
        return pa.Column(str, unique=True, coerce=True, required=required)
    if name == "ifo":
        return pa.Column(str, pa.Check.isin(IFOS), required=required)
    if name == "label":
        return pa.Column(str, pa.Check.isin(list(classes)), nullable=True, coerce=True, required=required)
    if name == "event_time":
        return pa.Column(float, [pa.Check.ge(0), FINITE], coerce=True, required=required)
    return pa.Column(float, [pa.Check.gt(0), FINITE], coerce=True, required=required)


@dataclass(frozen=True)
class SourceFormat:
    """A Gravity Spy metadata format: which of its columns hold the canonical quantities."""

    name: str
    #: canonical name (``id`` included) -> the format's column
    columns: Mapping[str, str]
    #: a column of nanoseconds to add to ``event_time`` (v1.0 splits times into seconds and nanoseconds)
    nanoseconds: str | None = None
    #: canonical quantities a file of this format may lack (left out of the features)
    optional: tuple[str, ...] = ("central_frequency", "duration", "bandwidth", "amplitude")
    #: a column holding the whole ``event_time``, read when a file lacks ``columns["event_time"]``
    whole_event_time: str | None = None

    def for_header(self, header: Sequence[str]) -> SourceFormat:
        """This format as a file with ``header`` has it: its time in ``whole_event_time`` when it lacks the
        usual time column (a v1.0 table with ``event_time`` but no ``peak_time``/``peak_time_ns``)."""
        if self.columns["event_time"] in header or self.whole_event_time not in header:
            return self
        return replace(self, columns={**self.columns, "event_time": self.whole_event_time}, nanoseconds=None)

    def schema(self, classes: Sequence[str]) -> pa.DataFrameSchema:
        columns = {column: canonical_column(name, classes, required=name not in self.optional)
                   for name, column in self.columns.items()}
        if self.nanoseconds:
            columns[self.nanoseconds] = pa.Column(int, pa.Check.in_range(0, 999_999_999), required=False)
        return pa.DataFrameSchema(columns)

    def to_canonical(self, table: pd.DataFrame) -> pd.DataFrame:
        """Only this format's columns, renamed (a v1.0 file's ``event_time`` is ``peak_time`` + ``peak_time_ns``:
        the exact pair is read when the file has it)."""
        present = {column: name for name, column in self.columns.items() if column in table.columns}
        renamed = table[list(present)].rename(columns=present)
        if self.nanoseconds in table.columns:
            renamed["event_time"] = renamed["event_time"] + table[self.nanoseconds] * 1e-9
        return canonical(renamed)


V1_FORMAT = SourceFormat("Gravity Spy v1.0 metadata", {
    "id": "gravityspy_id", "ifo": "ifo", "event_time": "peak_time", "peak_frequency": "peak_frequency",
    "central_frequency": "central_freq", "duration": "duration", "bandwidth": "bandwidth", "snr": "snr",
    "amplitude": "amplitude", "label": "label"}, nanoseconds="peak_time_ns", whole_event_time="event_time")
O3_FORMAT = SourceFormat("Gravity Spy O3 catalogue", {
    "id": "id", "ifo": "ifo", "event_time": "GPStime", "peak_frequency": "peakFreq",
    "central_frequency": "centralFreq", "duration": "duration", "bandwidth": "bandwidth", "snr": "snr",
    "amplitude": "amplitude", "label": "label"})
FORMATS = (V1_FORMAT, O3_FORMAT)


def detect_format(columns: Sequence[str], path: str | os.PathLike[str]) -> SourceFormat:
    """The format whose id column the header has (v1.0 ``gravityspy_id``, O3 ``id``), as ``columns`` has it."""
    for fmt in FORMATS:
        if fmt.columns["id"] in columns:
            return fmt.for_header(columns)
    expected = " or ".join(f"{fmt.columns['id']!r} ({fmt.name})" for fmt in FORMATS)
    raise CsvError(f"Gravity Spy metadata {path}: line 1 has no id column {expected}")


@dataclass
class GravitySpyData:
    """Gravity Spy metadata CSV, v1.0 training-set or O3 catalogue format (detected from the header).

    ``labels_as="label"``: labels are known labels and unlabelled rows are the pool; ``"truth"``: labels
    become hidden ground truth, for a simulated campaign on real rows.
    """

    path: str | os.PathLike[str] | None = None
    classes: list[str] = field(default_factory=lambda: list(GRAVITY_SPY_CLASSES))
    labels_as: str = "label"
    features: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:
        check_labels_as(self.labels_as)

    def load(self) -> Candidates:
        raw = read_csv(given(self.path, "Gravity Spy metadata"), what="Gravity Spy metadata")
        fmt = detect_format(list(raw.columns), self.path)
        table = validate(raw, fmt.schema(self.classes), source=f"{fmt.name} {self.path}")
        frame = use_labels_as(fmt.to_canonical(table), self.labels_as)
        return make_candidates(frame, self.features, self.classes, f"{fmt.name} {self.path}")


@dataclass
class CsvData:
    """A user's own feature table: an id column, numeric feature columns, optionally a label column.

    ``feature_columns=None`` takes every column but the id, the label and the canonical ones. Columns named
    like canonical ones (``ifo``, ``event_time``, ``snr``, ...) are kept and checked too.
    """

    path: str | os.PathLike[str] | None = None
    feature_columns: list[str] | None = None
    id_column: str = "id"
    label_column: str | None = None
    classes: list[str] = field(default_factory=lambda: list(GRAVITY_SPY_CLASSES))
    labels_as: str = "label"

    def __post_init__(self) -> None:
        check_labels_as(self.labels_as)

    def schema(self, feature_columns: Sequence[str]) -> pa.DataFrameSchema:
        columns = {c: canonical_column(c, self.classes, required=False) for c in MEASURED_COLUMNS}
        columns[self.id_column] = canonical_column("id", self.classes)
        columns.update({c: pa.Column(float, FINITE, coerce=True)
                        for c in feature_columns})
        if self.label_column is not None:
            columns[self.label_column] = canonical_column("label", self.classes)
        return pa.DataFrameSchema(columns)

    def load(self) -> Candidates:
        source = f"feature table {self.path}"
        raw = read_csv(given(self.path, "feature table"), what="feature table")
        features = self.feature_columns
        if features is None:
            features = [c for c in raw.columns if c not in (self.id_column, self.label_column, *CANONICAL_COLUMNS)]
        table = validate(raw, self.schema(features), source=source)
        kept = [c for c in table.columns if c in MEASURED_COLUMNS]
        names = {self.id_column: "id", **{c: c for c in (*kept, *features)}}
        if self.label_column is not None:
            names[self.label_column] = "label"
        frame = use_labels_as(canonical(table[list(names)].rename(columns=names), features), self.labels_as)
        spec = FeatureSpec(log10=[], linear=list(features), one_hot_ifo=[])
        return make_candidates(frame, spec, self.classes, source)


@dataclass
class SyntheticData:
    """``n`` synthetic candidates shaped like Gravity Spy v1.0 (see ``glitchrun.data.synthetic``), ground truth in
    ``truth``; the first ``labelled_per_class`` of each class also start with their label known. ``priors``
    (class -> weight) replaces the v1.0 class frequencies."""

    n: int = 20_000
    seed: int = 0
    classes: list[str] = field(default_factory=lambda: list(GRAVITY_SPY_CLASSES))
    labelled_per_class: int = 0
    priors: dict[str, float] | None = None
    features: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:  # numpy's own words for these would be "negative dimensions are not allowed"
        if int(self.n) < 1 or int(self.labelled_per_class) < 0:
            raise ValueError(f"data.n must be at least 1 and data.labelled_per_class at least 0, "
                             f"got {self.n} and {self.labelled_per_class}")

    def load(self) -> Candidates:
        frame = canonical(generate(self.n, self.seed, self.classes, priors=self.priors))
        if self.labelled_per_class:
            first = frame.groupby("truth", sort=False).cumcount() < self.labelled_per_class
            frame["label"] = frame["truth"].where(first)
        return make_candidates(frame, self.features, self.classes, f"synthetic data (seed {self.seed})")
