"""The DeepSense 6G builder on the real scenarios in ../shared/deepsense6g and on small corrupted copies of them."""

import csv
import json
import os
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dataset_scripts.deepsense6g import DeepSense6G, DeepSenseRowError, load_deepsense6g

REAL = Path(__file__).resolve().parents[2] / "shared" / "deepsense6g"
REAL_COUNTS = {1: (2422, 29), 2: (2974, 33), 3: (1487, 52), 4: (1867, 72), 5: (2300, 29)}
# A user's clone may lack ../shared; CI always has it, so there a missing folder fails instead of skipping.
needs_real = pytest.mark.skipif(not REAL.is_dir() and not os.environ.get("CI"),
                                reason=f"real DeepSense scenarios not found at {REAL}")


def prepare(paths, config_name="samples", cache_dir=None, **kwargs):
    builder = DeepSense6G(config_name=config_name, scenario_paths=[str(p) for p in paths], cache_dir=str(cache_dir),
                          **kwargs)
    builder.download_and_prepare()
    return builder, builder.as_dataset()


def csv_rows(scenario: int):
    with open(REAL / f"scenario{scenario}" / f"scenario{scenario}.csv") as handle:
        return list(csv.DictReader(handle))


def expected_windows(seq_lengths, length=8, stride=1):
    return sum(max(0, (n - length) // stride + 1) for n in seq_lengths)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real_cache")


@needs_real
def test_real_samples_counts_labels_and_positions(real_cache):
    builder, data = prepare([REAL], cache_dir=real_cache)
    rows = [r for split in data.values() for r in split.select_columns(
        ["scenario", "seq_index", "beam_power", "beam_index", "csv_beam_index", "gps_position"])]
    for n, (samples, sequences) in REAL_COUNTS.items():
        mine = [r for r in rows if r["scenario"] == f"scenario{n}"]
        assert len(mine) == samples
        assert len({r["seq_index"] for r in mine}) == sequences
    powers = np.array([r["beam_power"] for r in rows])
    labels = np.array([r["beam_index"] for r in rows])
    np.testing.assert_array_equal(labels, powers.argmax(1))
    np.testing.assert_array_equal(labels, [r["csv_beam_index"] for r in rows])  # these CSVs agree with the power
    distances = np.linalg.norm(np.array([r["gps_position"] for r in rows]), axis=1)
    assert 1 < np.median(distances) < 100  # metres from the base station, not degrees
    report = builder.bad_rows_report
    assert report["skipped_rows"] == 0 and report["label_mismatches"] == 0
    assert report["scenarios"]["scenario3"]["columns"]["vehicle_location_calibrated"] == "unit2_loc_cal"


@needs_real
def test_real_in_scenario_split_keeps_sequences_whole(real_cache):
    _, data = prepare([REAL / "scenario1", REAL / "scenario2"], cache_dir=real_cache, split_seed=3)
    owner = {}
    for split, ds in data.items():
        for key in {(r["scenario"], r["seq_index"]) for r in ds.select_columns(["scenario", "seq_index"])}:
            assert key not in owner, f"{key} in {owner.get(key)} and {split}"
            owner[key] = split
    counts = Counter(owner.values())
    assert counts["train"] > counts["test"] > counts["validation"] > 0
    assert len(owner) == 29 + 33
    _, other_seed = prepare([REAL / "scenario1", REAL / "scenario2"], cache_dir=real_cache, split_seed=4)
    assert set(other_seed["test"]["seq_index"]) != set(data["test"]["seq_index"])
    _, alone = prepare([REAL / "scenario2"], cache_dir=real_cache, split_seed=3)
    for split, ds in alone.items():  # adding scenario1 moved none of scenario2's passes
        assert {s for s, owner_split in owner.items() if owner_split == split and s[0] == "scenario2"} == {
            ("scenario2", i) for i in ds["seq_index"]}


@needs_real
def test_real_beam_prediction_windows(real_cache):
    _, data = prepare([REAL / "scenario1"], "beam_prediction", cache_dir=real_cache, split_fractions=(1.0, 0.0, 0.0))
    windows = data["train"]
    rows = csv_rows(1)
    seq_of = {int(r["index"]): int(r["seq_index"]) for r in rows}
    seq_lengths = Counter(seq_of.values()).values()
    assert len(windows) == expected_windows(seq_lengths)
    power = {int(r["index"]): np.loadtxt(REAL / "scenario1" / r["unit1_pwr_60ghz"]) for r in rows}
    for window in windows.select(range(0, len(windows), 97)):
        indices = window["sample_index"]
        assert indices == list(range(indices[0], indices[0] + 8))  # consecutive rows
        assert {seq_of[i] for i in indices} == {window["seq_index"]}  # never across sequences
        np.testing.assert_allclose(window["beam_power"], [power[i] for i in indices[:5]], rtol=1e-6)
        assert window["labels"] == [int(power[i].argmax()) for i in indices[5:]]
        assert window["has_gps"] == [True] * 5 and window["has_image"] == [False] * 5

    _, strided = prepare([REAL / "scenario1"], "beam_prediction", cache_dir=real_cache, stride=4,
                         split_fractions=(1.0, 0.0, 0.0), history_len=3, horizon=2)
    assert len(strided["train"]) == expected_windows(seq_lengths, length=5, stride=4)
    assert np.array(strided["train"][0]["beam_power"]).shape == (3, 64)


@needs_real
def test_real_cross_scenario_split(real_cache):
    _, data = prepare([REAL], "beam_prediction", cache_dir=real_cache, split_mode="cross_scenario",
                      train_scenarios=(1, 2, 3, 4), test_scenarios=("scenario5",))
    assert set(data) == {"train", "test"}
    assert set(data["test"]["scenario"]) == {"scenario5"}
    assert set(data["train"]["scenario"]) == {"scenario1", "scenario2", "scenario3", "scenario4"}
    seq5 = Counter(int(r["seq_index"]) for r in csv_rows(5)).values()
    assert len(data["test"]) == expected_windows(seq5)
    with pytest.raises(ValueError, match="scenario9"):
        prepare([REAL / "scenario5"], "samples", cache_dir=real_cache, split_mode="cross_scenario",
                train_scenarios=(5,), test_scenarios=(9,))


@needs_real
def test_real_power_forecast_targets_are_future_power(real_cache):
    _, data = prepare([REAL / "scenario3"], "power_forecast", cache_dir=real_cache, split_fractions=(1.0, 0.0, 0.0))
    window = data["train"][10]
    rows = {int(r["index"]): r for r in csv_rows(3)}
    future = [np.loadtxt(REAL / "scenario3" / rows[i]["unit1_pwr_60ghz"]) for i in window["sample_index"][5:]]
    np.testing.assert_allclose(window["labels"], future, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# Small corrupted copies


def small_copy(tmp_path, rows=30, name="scenario1", source=REAL / "scenario1") -> Path:
    """The first `rows` rows of a scenario, with the files they point to."""
    folder = tmp_path / name
    with open(source / f"{source.name}.csv") as handle:
        reader = csv.DictReader(handle)
        fieldnames, kept = reader.fieldnames, [r for _, r in zip(range(rows), reader, strict=False)]
    for row in kept:
        for column in fieldnames:
            if row[column].startswith("./"):
                target = folder / row[column]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source / row[column], target)
    write_csv(folder / f"{name}.csv", fieldnames, kept)
    return folder


def write_csv(path, fieldnames, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def edit_csv(folder: Path, edit):
    path = next(folder.glob("*.csv"))
    with open(path) as handle:
        reader = csv.DictReader(handle)
        fieldnames, rows = list(reader.fieldnames), list(reader)
    fieldnames = edit(fieldnames, rows) or fieldnames
    write_csv(path, fieldnames, rows)


def set_cell(row_number, column, value):
    def edit(fieldnames, rows):
        rows[row_number - 1][column] = value
    return edit


def row_file(folder, row_number, column):
    """The file that data row `row_number` of the folder's CSV names in `column`."""
    with open(next(folder.glob("*.csv"))) as handle:
        return folder / list(csv.DictReader(handle))[row_number - 1][column]


def power_file(folder, row_number):
    return row_file(folder, row_number, "unit1_pwr_60ghz")


def gps_file(folder, row_number):
    return row_file(folder, row_number, "unit2_loc")


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


# case -> (corruption of data row 7, the reason the report must give)
BAD_ROWS = {
    "nan_beam_label": (lambda f: edit_csv(f, set_cell(7, "unit1_beam_index", "nan")), "beam_label_nan"),
    "empty_beam_label": (lambda f: edit_csv(f, set_cell(7, "unit1_beam_index", "")), "beam_label_nan"),
    "missing_power_file": (lambda f: power_file(f, 7).unlink(), "missing_file"),
    "missing_gps_file": (lambda f: gps_file(f, 7).unlink(), "missing_file"),
    "truncated_power_file": (lambda f: truncate(power_file(f, 7), 300), "power_wrong_length"),
    "empty_power_file": (lambda f: truncate(power_file(f, 7), 0), "power_wrong_length"),
    "power_vector_too_long": (lambda f: power_file(f, 7).write_text("0.1\n" * 65), "power_wrong_length"),
    "power_text": (lambda f: power_file(f, 7).write_text("0.1\n" * 30 + "abc\n" + "0.1\n" * 33), "power_unparsable"),
    "power_nan": (lambda f: power_file(f, 7).write_text("0.1\n" * 30 + "nan\n" + "0.1\n" * 33), "power_unparsable"),
    "gps_text": (lambda f: gps_file(f, 7).write_text("33.42\nnot-a-longitude\n"), "gps_unparsable"),
    "gps_out_of_range": (lambda f: gps_file(f, 7).write_text("333.42\n-111.9\n"), "gps_unparsable"),
    "gps_one_value": (lambda f: gps_file(f, 7).write_text("33.42\n"), "gps_unparsable"),
    "empty_seq_index": (lambda f: edit_csv(f, set_cell(7, "seq_index", "")), "seq_index_invalid"),
}


@needs_real
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_skipped_and_reported_or_raised(tmp_path, case):
    corrupt, reason = BAD_ROWS[case]
    folder = small_copy(tmp_path)
    corrupt(folder)
    builder, data = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    assert len(data["train"]) == 29
    assert 7 not in data["train"]["row"]
    skipped = builder.bad_rows_report["scenarios"]["scenario1"]["skipped"]
    assert skipped == {reason: {"count": 1, "rows": [7], "examples": skipped[reason]["examples"]}}
    assert builder.bad_rows_report["skipped_rows"] == 1
    assert builder.bad_rows_report["skipped_by_reason"] == {reason: 1}
    with pytest.raises(DeepSenseRowError, match=rf"scenario1\.csv row 7: {reason}"):
        prepare([folder], cache_dir=tmp_path / "cache_error", on_bad_row="error")


@needs_real
def test_windows_never_bridge_a_skipped_row(tmp_path):
    folder = small_copy(tmp_path, rows=20)  # one sequence of 20 rows
    power_file(folder, 10).unlink()
    _, data = prepare([folder], "beam_prediction", cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    # rows 1-9 give 2 windows, rows 11-20 give 3; none contains row 10
    assert len(data["train"]) == 5
    assert all(10 not in w for w in data["train"]["sample_index"])


@needs_real
def test_reversed_train_windows_are_training_passes_read_backwards(tmp_path):
    folder = small_copy(tmp_path, rows=20)
    power_file(folder, 10).unlink()  # runs of rows 1-9 and 11-20: reading backwards must not bridge the gap either
    kwargs = {"cache_dir": tmp_path / "cache", "split_fractions": (1.0, 0.0, 0.0)}
    _, forward = prepare([folder], "power_forecast", **kwargs)
    _, both = prepare([folder], "power_forecast", reversed_train_windows=True, **kwargs)
    assert len(both["train"]) == 2 * len(forward["train"]) == 10  # a new cache, not the forward one served again
    reversed_ = both["train"].select(range(5, 10))
    assert sorted(w[::-1] for w in reversed_["sample_index"]) == sorted(forward["train"]["sample_index"])
    by_rows = {tuple(w["sample_index"]): w for w in forward["train"]}
    for window in reversed_:
        original = by_rows[tuple(window["sample_index"][::-1])]
        whole = np.concatenate([original["beam_power"], original["labels"]])[::-1]  # (8, 64), last row first
        np.testing.assert_allclose(np.concatenate([window["beam_power"], window["labels"]]), whole)
    _, held = prepare([folder, small_copy(tmp_path, rows=20, name="scenario2")], "beam_prediction",
                      reversed_train_windows=True, cache_dir=tmp_path / "cache2", split_mode="cross_scenario",
                      train_scenarios=(1,), test_scenarios=(2,))
    assert len(held["train"]) == 10 and len(held["test"]) == 13  # 20 rows in one run, never read backwards
    assert all(w == sorted(w) for w in held["test"]["sample_index"])


@needs_real
def test_faster_train_windows_take_every_kth_row_of_training_passes(tmp_path):
    folder = small_copy(tmp_path, rows=40)
    power_file(folder, 10).unlink()  # runs of rows 1-9 and 11-40: a faster window must not bridge the gap either
    kwargs = {"cache_dir": tmp_path / "cache", "split_fractions": (1.0, 0.0, 0.0)}
    _, forward = prepare([folder], "power_forecast", **kwargs)
    _, faster = prepare([folder], "power_forecast", faster_train_windows=(2, 3), **kwargs)
    assert len(forward["train"]) == 2 + 23  # windows of 8 rows in runs of 9 and 30
    added = faster["train"].select(range(len(forward["train"]), len(faster["train"])))
    # a window of every 2nd row spans 15 rows, of every 3rd 22: only the run of 30 holds them (16 and 9 windows)
    assert added["sample_index"] == [list(range(i, i + 15, 2)) for i in range(11, 27)] + \
        [list(range(i, i + 22, 3)) for i in range(11, 20)]
    power = {}  # row -> its measured power vector, from the windows as measured
    for window in forward["train"]:
        power.update(zip(window["sample_index"], window["beam_power"] + window["labels"], strict=True))
    for window in added:
        np.testing.assert_allclose(window["beam_power"] + window["labels"], [power[r] for r in window["sample_index"]])
    _, held = prepare([folder, small_copy(tmp_path, rows=40, name="scenario2")], "beam_prediction",
                      faster_train_windows=(2,), cache_dir=tmp_path / "cache2", split_mode="cross_scenario",
                      train_scenarios=(1,), test_scenarios=(2,))
    assert len(held["train"]) == 25 + 16 and len(held["test"]) == 33  # 40 rows in one run, every row kept
    assert all(np.diff(w).tolist() == [1] * 7 for w in held["test"]["sample_index"])
    with pytest.raises(ValueError, match="row steps of at least 2"):
        prepare([folder], "power_forecast", faster_train_windows=(1,), **kwargs)
    with pytest.raises(ValueError, match="faster_train_windows .* 'samples' config"):
        prepare([folder], "samples", faster_train_windows=(2,), **kwargs)


@needs_real
def test_column_aliases_case_and_empty_columns(tmp_path):
    folder = small_copy(tmp_path)

    def rename(fieldnames, rows):
        for row in rows:
            row["unit1_beam"] = row.pop("unit1_beam_index")
            row["time_stamp[UTC]"] = "11-46-30.452000"
            row[""] = ""
        return ["index", "", "unit1_pwr_60ghz", "unit1_loc", "unit2_loc", "unit1_beam", "seq_index",
                "time_stamp[UTC]"]

    edit_csv(folder, rename)
    gps = gps_file(folder, 3)
    gps.rename(gps.with_name(gps.name.replace("gps_location", "GPS_location")))
    builder, data = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0),
                            on_bad_row="error")
    assert len(data["train"]) == 30
    assert data["train"][0]["time_stamp"] == "11-46-30.452000"
    report = builder.bad_rows_report["scenarios"]["scenario1"]
    assert report["columns"]["beam"] == "unit1_beam" and report["columns"]["time_stamp"] == "time_stamp[UTC]"
    assert report["ignored_columns"] == [""]


@needs_real
def test_reversed_csv_labels_are_counted_and_can_be_trusted(tmp_path):
    """One public scenario 9 release labels beams 64 - argmax; the report names the pattern."""
    folder = small_copy(tmp_path)

    def reverse(fieldnames, rows):
        for row in rows:
            row["unit1_beam_index"] = str(64 - (int(row["unit1_beam_index"]) - 1))

    edit_csv(folder, reverse)
    builder, data = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    mismatches = builder.bad_rows_report["scenarios"]["scenario1"]["label_mismatches"]
    argmax = np.array(data["train"]["beam_power"]).argmax(1)
    differing = int((64 - argmax != argmax + 1).sum())
    assert mismatches["count"] == mismatches["reversed_count"] == differing > 0
    np.testing.assert_array_equal(data["train"]["beam_index"], argmax)  # default: the power decides

    _, trusted = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0),
                         label_source="csv")
    np.testing.assert_array_equal(trusted["train"]["beam_index"], 63 - argmax)


@needs_real
def test_zip_input_and_passthrough_columns(tmp_path):
    folder = small_copy(tmp_path / "src")

    def add_sensors(fieldnames, rows):
        for i, row in enumerate(rows):
            row["unit1_lidar"] = f"./unit1/lidar_data/lidar_{i}.ply"
            row["unit1_radar"] = f"./unit1/radar_data/radar_{i}.npy"
            del row["unit2_loc"]
        return [f for f in fieldnames if f != "unit2_loc"] + ["unit1_lidar", "unit1_radar"]

    edit_csv(folder, add_sensors)
    for sub, ext in (("lidar_data", "ply"), ("radar_data", "npy")):
        (folder / "unit1" / sub).mkdir(parents=True)
        for i in range(30):
            (folder / "unit1" / sub / f"{sub.split('_')[0]}_{i}.{ext}").write_bytes(b"x")
    archive = tmp_path / "scenario1.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in folder.rglob("*"):
            handle.write(path, path.relative_to(folder.parent))
    _, data = prepare([archive], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    first = data["train"][0]
    assert len(data["train"]) == 30
    assert first["lidar_path"].endswith("lidar_0.ply") and first["radar_path"].endswith("radar_0.npy")
    assert first["gps_position"] is None and first["image"] is None  # absent modalities stay absent


def test_missing_required_column_is_a_clear_error(tmp_path):
    folder = tmp_path / "scenario7"
    folder.mkdir()
    (folder / "scenario7.csv").write_text("index,unit1_rgb,seq_index\n1,./a.jpg,1\n")
    with pytest.raises(ValueError, match=r"scenario7\.csv: no column for \['power'\]"):
        prepare([folder], cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="no DeepSense scenario"):
        prepare([tmp_path / "cache"], cache_dir=tmp_path / "cache2")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split_mode": "by_time"}, "split_mode must be one of"),
        ({"on_bad_row": "ignore"}, "on_bad_row must be one of"),
        ({"label_source": "camera"}, "label_source must be one of"),
        ({"stride": 0}, "stride must be > 0"),
        ({"split_fractions": (0.5, 0.2, 0.2)}, "summing to 1"),
        ({"split_mode": "cross_scenario", "train_scenarios": (1,)}, "needs train_scenarios and test_scenarios"),
    ],
)
def test_builder_options_are_checked_on_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepSense6G(config_name="beam_prediction", scenario_paths=[str(tmp_path)], cache_dir=str(tmp_path), **kwargs)


def test_report_is_json_in_the_cache(tmp_path):
    from dataset_scripts.digital_twin import generate_scenario

    folder = generate_scenario(tmp_path, "twin3", num_samples=40, image_size=(32, 18))
    builder = DeepSense6G(config_name="samples", data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()  # data_dir is the datasets-native way to name one scenario or a parent folder
    on_disk = json.loads(next((tmp_path / "cache").rglob("bad_rows_report.json")).read_text())
    assert on_disk == builder.bad_rows_report and on_disk["scenarios"]["twin3"]["kept"] == 40


def test_load_helper_returns_dataset_dict(tmp_path, monkeypatch):
    from dataset_scripts.digital_twin import generate_scenario

    generate_scenario(tmp_path, "twin1", num_samples=60, image_size=(32, 18))
    monkeypatch.setenv("HOME", str(tmp_path))
    data = load_deepsense6g("~/twin1", "beam_prediction", cache_dir=str(tmp_path / "cache"))  # as a user types it
    assert set(data) <= {"train", "validation", "test"} and sum(map(len, data.values())) > 0


@needs_real
def test_changed_inputs_are_prepared_again_not_served_from_a_stale_cache(tmp_path):
    folder = small_copy(tmp_path, rows=30)
    _, data = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    assert len(data["train"]) == 30
    _, again = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    assert again["train"].cache_files == data["train"].cache_files  # unchanged inputs reuse the cache

    edit_csv(folder, lambda fieldnames, rows: rows.__delitem__(slice(20, None)))  # the CSV loses 10 rows
    _, fewer = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    assert len(fewer["train"]) == 20

    # A power file rewritten in place (same CSV) changes its row's label.
    path = power_file(folder, 1)
    power = np.loadtxt(path)
    power[power.argmin()] = 10 * power.max()
    np.savetxt(path, power)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    _, edited = prepare([folder], cache_dir=tmp_path / "cache", split_fractions=(1.0, 0.0, 0.0))
    assert edited["train"][0]["beam_index"] == int(power.argmax()) != fewer["train"][0]["beam_index"]


def test_every_split_with_a_share_gets_a_sequence_when_there_are_enough():
    from dataset_scripts.deepsense6g.deepsense6g import split_counts

    assert split_counts((0.7, 0.1, 0.2), 8) == [5, 1, 2]  # plain rounding gives validation nothing: 6 / 0 / 2
    assert split_counts((0.7, 0.1, 0.2), 29) == [20, 3, 6]  # the real scenarios split as they always did
    assert split_counts((1.0, 0.0, 0.0), 8) == [8, 0, 0]
    assert split_counts((0.7, 0.1, 0.2), 1) == [1, 0, 0]
