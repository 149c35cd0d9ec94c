"""The digital twin: DeepSense layout, determinism, physics the modalities share, and the builder reading it."""

import csv
import filecmp

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard

from dataset_scripts.deepsense6g import DeepSense6G, DeepSenseRowError, export_parquet, load_deepsense6g
from dataset_scripts.digital_twin import PRESETS, ArrayCodebook, generate_scenario
from dataset_scripts.digital_twin.__main__ import main as twin_cli
from dataset_scripts.digital_twin.sanity import modality_accuracy
from modeling_wmlm.geo import enu_to_latlon, latlon_to_enu

SMALL = {"num_samples": 120, "image_size": (64, 36)}


@pytest.fixture(scope="module")
def twin1(tmp_path_factory):
    return generate_scenario(tmp_path_factory.mktemp("twin"), "twin1", seed=0, **SMALL)


def read_rows(folder):
    with open(folder / f"{folder.name}.csv") as handle:
        return list(csv.DictReader(handle))


def test_layout_matches_deepsense(twin1):
    rows = read_rows(twin1)
    assert len(rows) == 120
    assert list(rows[0]) == ["index", "unit1_rgb", "unit1_pwr_60ghz", "unit1_loc", "unit2_loc", "unit1_beam",
                             "seq_index", "time_stamp[UTC]"]
    for row in rows[:5]:
        power = np.loadtxt(twin1 / row["unit1_pwr_60ghz"])
        assert power.shape == (64,) and (power > 0).all()
        assert int(row["unit1_beam"]) == power.argmax() + 1  # 1-based, as DeepSense
        lat, lon = np.loadtxt(twin1 / row["unit2_loc"])
        assert abs(lat - 33.42) < 0.01 and abs(lon + 111.93) < 0.01
        assert (twin1 / row["unit1_rgb"]).stat().st_size > 0
    seqs = [int(r["seq_index"]) for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) >= 2


def test_generation_is_deterministic(tmp_path, twin1):
    again = generate_scenario(tmp_path / "again", "twin1", seed=0, **SMALL)
    other = generate_scenario(tmp_path / "other", "twin1", seed=1, **SMALL)
    for relative in ["twin1.csv", "unit1/mmWave_data/mmWave_power_17.txt", "unit1/camera_data/image_17.jpg",
                     "unit2/GPS_data/gps_location_17.txt"]:
        assert filecmp.cmp(twin1 / relative, again / relative, shallow=False), relative
        assert not filecmp.cmp(twin1 / relative, other / relative, shallow=False), relative


def test_frame_size_and_length_change_nothing_else(tmp_path, twin1):
    """Radio and GPS depend only on (preset, seed): other frame sizes give the same CSV, fewer samples a prefix."""
    resized = generate_scenario(tmp_path / "resized", "twin1", seed=0, num_samples=120, image_size=(32, 18))
    shorter = generate_scenario(tmp_path / "shorter", "twin1", seed=0, num_samples=50, image_size=(64, 36))
    assert filecmp.cmp(twin1 / "twin1.csv", resized / "twin1.csv", shallow=False)
    assert read_rows(shorter) == read_rows(twin1)[:50]
    for relative in ["unit1/mmWave_data/mmWave_power_49.txt", "unit2/GPS_data/gps_location_49.txt"]:
        assert filecmp.cmp(twin1 / relative, resized / relative, shallow=False)
        assert filecmp.cmp(twin1 / relative, shorter / relative, shallow=False)


def test_codebook_beam_follows_the_vehicle_bearing(twin1):
    """In line of sight the best beam points at the vehicle: beam angle tracks the GPS bearing."""
    preset, codebook = PRESETS["twin1"], ArrayCodebook()
    rows = read_rows(twin1)
    bs = np.loadtxt(twin1 / rows[0]["unit1_loc"])
    enu = np.array([latlon_to_enu(*np.loadtxt(twin1 / r["unit2_loc"]), *bs) for r in rows])
    phi = np.radians(preset.orientation_deg)
    across, along = enu @ np.array([np.cos(phi), -np.sin(phi)]), enu @ np.array([np.sin(phi), np.cos(phi)])
    bearing = np.arctan2(across, along)
    beam_angle = codebook.beam_angles[[int(r["unit1_beam"]) - 1 for r in rows]]
    inside = np.abs(bearing) < np.radians(50)  # away from the codebook's edge beams
    assert np.corrcoef(bearing[inside], beam_angle[inside])[0, 1] > 0.9


def test_presets_differ_in_geometry(tmp_path):
    distances = {}
    for name in ("twin1", "twin4"):
        folder = generate_scenario(tmp_path, name, num_samples=60, image_size=(32, 18))
        rows = read_rows(folder)
        bs = np.loadtxt(folder / rows[0]["unit1_loc"])
        enu = np.array([latlon_to_enu(*np.loadtxt(folder / r["unit2_loc"]), *bs) for r in rows])
        distances[name] = np.median(np.linalg.norm(enu, axis=1))
    assert distances["twin4"] > 1.5 * distances["twin1"]


def test_geo_roundtrip():
    lat, lon = enu_to_latlon(123.4, -56.7, 33.42, -111.93)
    np.testing.assert_allclose(latlon_to_enu(lat, lon, 33.42, -111.93), [123.4, -56.7], atol=1e-6)
    # one degree of latitude is about 111 km
    assert abs(latlon_to_enu(34.42, -111.93, 33.42, -111.93)[1] - 110_900) < 300


def test_builder_reads_twin_with_images(tmp_path, twin1):
    builder = DeepSense6G(config_name="beam_prediction", scenario_paths=[str(twin1)], cache_dir=str(tmp_path),
                          split_fractions=(1.0, 0.0, 0.0), on_bad_row="error")
    builder.download_and_prepare()
    windows = builder.as_dataset()["train"]
    window = windows[0]
    assert len(window["image"]) == 5 and window["image"][0].size == (64, 36)
    assert window["has_image"] == [True] * 5 and window["has_gps"] == [True] * 5
    assert builder.bad_rows_report["label_mismatches"] == 0


def test_corrupt_image_is_a_bad_row(tmp_path):
    folder = generate_scenario(tmp_path, "twin3", num_samples=30, image_size=(32, 18))
    image = folder / read_rows(folder)[4]["unit1_rgb"]
    image.write_bytes(image.read_bytes()[:50])
    builder = DeepSense6G(config_name="samples", scenario_paths=[str(folder)], cache_dir=str(tmp_path / "c"),
                          split_fractions=(1.0, 0.0, 0.0))
    builder.download_and_prepare()
    assert builder.bad_rows_report["scenarios"]["twin3"]["skipped"]["image_unreadable"]["rows"] == [5]
    with pytest.raises(DeepSenseRowError, match=r"twin3\.csv row 5: image_unreadable"):
        DeepSense6G(config_name="samples", scenario_paths=[str(folder)], cache_dir=str(tmp_path / "d"),
                    on_bad_row="error").download_and_prepare()


def test_parquet_export_embeds_images(tmp_path):
    folder = generate_scenario(tmp_path / "twin", "twin2", num_samples=40, image_size=(32, 18))
    data = load_deepsense6g([folder], "samples", cache_dir=str(tmp_path / "cache"))
    files = export_parquet(data, str(tmp_path / "hub"))
    expected = {split: len(ds) for split, ds in data.items()}
    del data
    for path in tmp_path.joinpath("twin").rglob("*.jpg"):  # the export must not depend on the source files
        path.unlink()
    # The dataset card's `configs` metadata is what lets the folder (or its pushed repository) load by itself.
    reloaded = datasets.load_dataset(str(tmp_path / "hub"), cache_dir=str(tmp_path / "pq"))
    assert len(files) == len(expected) and {s: len(d) for s, d in reloaded.items()} == expected
    assert reloaded["train"][0]["image"].size == (32, 18)
    card = DatasetCard.load(tmp_path / "hub" / "README.md")
    assert card.data.license == "cc-by-nc-sa-4.0" and "alkhateeb2023deepsense" in card.text
    assert [c["config_name"] for c in card.data.configs] == ["default"]


def test_cli_writes_scenarios(tmp_path, capsys):
    twin_cli(["--output_dir", str(tmp_path), "--presets", "twin3", "twin4", "--num_samples", "12",
              "--image_width", "32", "--image_height", "18"])
    assert len(read_rows(tmp_path / "twin3")) == len(read_rows(tmp_path / "twin4")) == 12
    assert "wrote" in capsys.readouterr().out


def test_camera_and_gps_each_carry_beam_information(tmp_path):
    """Simple classifiers from one modality beat always guessing the most common beam on held-out sequences."""
    # About 15 passes: fewer make the held-out sequences too few for a stable comparison.
    folder = generate_scenario(tmp_path, "twin1", num_samples=1000, seed=0, image_size=(160, 90))
    accuracy = modality_accuracy(folder, cache_dir=str(tmp_path / "cache"))
    for modality in ("gps_knn", "camera_knn"):
        assert accuracy[modality] > 1.5 * accuracy["majority"], accuracy
        assert accuracy[f"{modality}_within2"] > 2 * accuracy["majority_within2"], accuracy
