"""Read one DeepSense 6G scenario folder (`scenarioN.csv` plus the per-row files it points to) into checked samples.

Real releases differ between scenarios (column names, file-name case, empty columns, NaN labels, label conventions),
so every row is checked. A bad row is either skipped and recorded in the report, with its reason and row number, or,
with `on_bad_row="error"`, raised as a `DeepSenseRowError` that names the file and row.
"""

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from modeling_wmlm.geo import latlon_to_enu

# Canonical field -> the CSV headers that real releases use for it (compared lower-cased, stripped).
COLUMN_ALIASES = {
    "index": ("index", "abs_index"),
    "power": ("unit1_pwr_60ghz", "unit1_pwr1", "unit1_pwr"),
    "image": ("unit1_rgb", "unit1_rgb1"),
    "bs_location": ("unit1_loc", "unit1_loc1"),
    "vehicle_location": ("unit2_loc", "unit2_loc1"),
    "vehicle_location_calibrated": ("unit2_loc_cal",),
    "beam": ("unit1_beam", "unit1_beam_index"),
    "sequence": ("seq_index",),
    "time_stamp": ("time_stamp[utc]", "time_stamp", "timestamp"),
    "lidar": ("unit1_lidar", "unit1_lidar_scr", "unit1_lidar1"),
    "radar": ("unit1_radar", "unit1_radar1"),
}
REQUIRED_FIELDS = ("power", "sequence")
BAD_ROW_POLICIES = ("skip", "error")
LABEL_SOURCES = ("power", "csv")


class DeepSenseRowError(ValueError):
    """A bad row met with `on_bad_row="error"`."""


class BadRow(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Sample:
    """One checked measurement. `row` is the 1-based data row of the CSV (the header is row 0)."""

    scenario: str
    row: int
    sample_index: int
    seq_index: int
    beam_power: np.ndarray  # (num_beams,) float32 linear power
    beam_index: int  # 0-based target beam
    csv_beam_index: int  # 0-based label the CSV states, -1 without a beam column
    time_stamp: str | None = None
    image_path: str | None = None
    gps_latlon: np.ndarray | None = None  # (2,) vehicle lat, lon as recorded (unit2_loc)
    gps_position: np.ndarray | None = None  # (2,) east, north metres from the base station (calibrated if given)
    bs_latlon: np.ndarray | None = None  # (2,)
    lidar_path: str | None = None
    radar_path: str | None = None


@dataclass
class ScenarioReport:
    scenario: str
    csv_path: str
    rows: int = 0
    kept: int = 0
    columns: dict = field(default_factory=dict)  # canonical field -> CSV header used
    ignored_columns: list = field(default_factory=list)
    skipped: dict = field(default_factory=lambda: defaultdict(list))  # reason -> [(row, detail)]
    label_mismatch_rows: list = field(default_factory=list)
    label_reversed_rows: list = field(default_factory=list)  # CSV label == num_beams - argmax (a known bad release)

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario,
            "csv": self.csv_path,
            "rows": self.rows,
            "kept": self.kept,
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "skipped": {reason: {"count": len(items), "rows": [r for r, _ in items],
                                 "examples": [d for _, d in items[:5]]}
                        for reason, items in sorted(self.skipped.items())},
            "label_mismatches": {"count": len(self.label_mismatch_rows), "rows": self.label_mismatch_rows,
                                 "reversed_count": len(self.label_reversed_rows)},
        }


def find_scenario_csv(folder: Path) -> Path | None:
    """`<folder>/<folder name>.csv`, or the only `scenario*.csv` inside the folder."""
    own = folder / f"{folder.name}.csv"
    if own.is_file():
        return own
    candidates = sorted(folder.glob("scenario*.csv"))
    return candidates[0] if len(candidates) == 1 else None


def map_columns(header: list[str], csv_path: Path) -> tuple[dict[str, str], list[str]]:
    """-> (canonical field -> header, ignored headers). Empty and pandas 'Unnamed: N' columns are ignored."""
    columns, ignored = {}, []
    for name in header:
        key = name.strip().lower()
        canonical = next((f for f, aliases in COLUMN_ALIASES.items() if key in aliases), None)
        if canonical is None or canonical in columns:
            ignored.append(name)
        else:
            columns[canonical] = name
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if missing:
        aliases = {f: COLUMN_ALIASES[f] for f in missing}
        raise ValueError(f"{csv_path}: no column for {missing}; expected one of {aliases}, found {header}")
    return columns, ignored


class FileResolver:
    """Paths in a CSV are relative to the scenario folder; real releases sometimes differ in file-name case."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def __call__(self, relative: str) -> Path:
        path = self.root / relative.strip()
        if path.is_file():
            return path
        listing = self._listings.get(path.parent)
        if listing is None:
            names = os.listdir(path.parent) if path.parent.is_dir() else []
            listing = self._listings[path.parent] = {n.lower(): n for n in names}
        actual = listing.get(path.name.lower())
        if actual is None:
            raise BadRow("missing_file", str(path))
        return path.parent / actual


def read_floats(path: Path, expected: int, reason: str, length_reason: str) -> np.ndarray:
    """`expected` whitespace-separated finite numbers, or a BadRow: `reason` for text, `length_reason` for count."""
    try:
        values = np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRow(reason, f"{path}: {error}") from None
    if len(values) != expected:
        raise BadRow(length_reason, f"{path}: {len(values)} values, expected {expected}")
    if not np.isfinite(values).all():
        raise BadRow(reason, f"{path}: non-finite value")
    return values


def parse_int(text: str, reason: str, what: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise BadRow(reason, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise BadRow(reason, f"{what} {text!r} is not an integer")
    return int(value)


class ScenarioReader:
    def __init__(self, num_beams: int = 64, on_bad_row: str = "skip", label_source: str = "power",
                 csv_beam_base: int = 1, verify_images: bool = True):
        if on_bad_row not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_row must be one of {BAD_ROW_POLICIES}, got {on_bad_row!r}")
        if label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
        self.num_beams = num_beams
        self.on_bad_row = on_bad_row
        self.label_source = label_source
        self.csv_beam_base = csv_beam_base
        self.verify_images = verify_images

    def read(self, folder: Path) -> tuple[list[Sample], ScenarioReport]:
        folder = Path(folder)
        csv_path = find_scenario_csv(folder)
        if csv_path is None:
            raise FileNotFoundError(f"{folder}: no scenario CSV (expected {folder.name}.csv or one scenario*.csv)")
        scenario = csv_path.stem
        with open(csv_path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            columns, ignored = map_columns(header, csv_path)
            if self.label_source == "csv" and "beam" not in columns:
                raise ValueError(f"{csv_path}: label_source='csv' needs a beam column, one of "
                                 f"{COLUMN_ALIASES['beam']}")
            report = ScenarioReport(scenario, str(csv_path), columns=columns, ignored_columns=ignored)
            position = {name: i for i, name in enumerate(header)}
            resolve = FileResolver(folder)
            location_cache: dict[Path, np.ndarray] = {}
            samples = []
            for row_number, values in enumerate(reader, start=1):
                report.rows += 1
                fields = {f: (values[position[h]] if position[h] < len(values) else "") for f, h in columns.items()}
                try:
                    sample = self._parse_row(scenario, row_number, fields, resolve, location_cache)
                except BadRow as bad:
                    if self.on_bad_row == "error":
                        raise DeepSenseRowError(f"{csv_path} row {row_number}: {bad.reason}: {bad.detail}") from None
                    report.skipped[bad.reason].append((row_number, bad.detail))
                    continue
                self._check_label(sample, report)
                samples.append(sample)
        report.kept = len(samples)
        return samples, report

    def _parse_row(self, scenario, row, fields, resolve, location_cache) -> Sample:
        power = read_floats(resolve(fields["power"]), self.num_beams, "power_unparsable", "power_wrong_length")
        seq_index = parse_int(fields["sequence"], "seq_index_invalid", "seq_index")
        csv_beam = -1
        if "beam" in fields:
            csv_beam = parse_int(fields["beam"], "beam_label_nan", "beam label") - self.csv_beam_base
        sample = Sample(
            scenario=scenario,
            row=row,
            sample_index=parse_int(fields["index"], "index_invalid", "index") if "index" in fields else row,
            seq_index=seq_index,
            beam_power=power.astype(np.float32),
            beam_index=int(power.argmax()),
            csv_beam_index=csv_beam,
            time_stamp=fields.get("time_stamp") or None,
        )
        if self.label_source == "csv":
            if not 0 <= csv_beam < self.num_beams:
                raise BadRow("beam_label_out_of_range", f"CSV beam label {fields.get('beam')!r}")
            sample.beam_index = csv_beam
        if "image" in fields:
            sample.image_path = str(self._check_image(resolve(fields["image"])))
        if "bs_location" in fields:
            sample.bs_latlon = self._location(resolve(fields["bs_location"]), location_cache)
        if "vehicle_location" in fields:
            sample.gps_latlon = self._location(resolve(fields["vehicle_location"]), location_cache)
            calibrated = sample.gps_latlon
            if fields.get("vehicle_location_calibrated"):
                calibrated = self._location(resolve(fields["vehicle_location_calibrated"]), location_cache)
            if sample.bs_latlon is not None:
                sample.gps_position = latlon_to_enu(*calibrated, *sample.bs_latlon).astype(np.float32)
        for sensor, attribute in (("lidar", "lidar_path"), ("radar", "radar_path")):
            if fields.get(sensor):
                setattr(sample, attribute, str(resolve(fields[sensor])))
        return sample

    def _check_image(self, path: Path) -> Path:
        if self.verify_images:
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as error:  # PIL raises many types for a corrupt file
                raise BadRow("image_unreadable", f"{path}: {error}") from None
        return path

    @staticmethod
    def _location(path: Path, cache: dict) -> np.ndarray:
        if path not in cache:
            values = read_floats(path, 2, "gps_unparsable", "gps_unparsable")
            if not (-90 <= values[0] <= 90 and -180 <= values[1] <= 180):
                raise BadRow("gps_unparsable", f"{path}: ({values[0]}, {values[1]}) is not a latitude, longitude")
            cache[path] = values
        return cache[path]

    def _check_label(self, sample: Sample, report: ScenarioReport):
        if "beam" not in report.columns:
            return
        argmax = int(sample.beam_power.argmax())
        if sample.csv_beam_index != argmax:
            report.label_mismatch_rows.append(sample.row)
            if sample.csv_beam_index + self.csv_beam_base == self.num_beams - argmax:
                report.label_reversed_rows.append(sample.row)
