"""`wmlm benchmark` end to end on a small twin: every method scored on the same windows, the documented schema."""

import json

import numpy as np
import pytest

from dataset_scripts.digital_twin import generate_scenarios
from modeling_wmlm import WMLMConfig
from wmlm import benchmark, cli

RECORD_KEYS = {"method", "scenario", "seed", "protocol", "train_fraction", "validation_top1", "top1", "top3", "top5",
               "dba", "power_loss_db", "within_0p5db", "within_1db", "ece", "sweep"}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    generate_scenarios(root, ["twin1", "twin4"], num_samples=300, image_size=(48, 27))
    return root


def test_benchmark_writes_the_documented_records(twin, tmp_path):
    cli.main(["benchmark", "--data_dir", str(twin), "--seeds", "0", "--epochs", "1", "--output_dir",
              str(tmp_path), "--soft_labels", "true"])
    records = json.loads((tmp_path / "results.json").read_text())
    assert {(r["scenario"], r["method"]) for r in records} == {
        (s, m) for s in ("twin1", "twin4") for m in ("wmlm", "gru", "persistence", "knn_gps")}
    for record in records:
        assert set(record) == RECORD_KEYS
        assert len(record["top1"]) == 3 and all(a <= b <= c for a, b, c in zip(
            record["top1"], record["top3"], record["top5"], strict=True))
        assert 0 <= record["dba"] <= 1 and min(record["power_loss_db"]) >= 0
    assert "| twin1 | persistence |" in (tmp_path / "results.md").read_text()


def test_baselines_predict_what_they_claim(twin, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), epochs=1)
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    (name, train_spec, test_spec), *_ = benchmark.tasks(args)
    data, splits = benchmark.load_task(train_spec, test_spec, 0, args, config)
    test, train = data["test"], data["train"]
    # The power-forecast labels and the beam-prediction labels describe the same windows.
    np.testing.assert_array_equal(np.array(splits["hard"]["test"]["labels"]), test["labels"].argmax(-1))

    persistence = benchmark.persistence(data, splits, args, 0)["test"]
    np.testing.assert_array_equal(persistence.argmax(-1), np.repeat(test["beam_index"][:, -1:], 3, axis=1))

    knn = benchmark.knn_gps(data, splits, args, 0, k=1)["test"]
    last = test["gps_position"][:, -1]
    nearest = np.linalg.norm(last[:, None] - train["gps_position"][None, :, -1], axis=-1).argmin(1)
    np.testing.assert_array_equal(knn.argmax(-1), train["labels"].argmax(-1)[nearest])
    np.testing.assert_allclose(knn.sum(-1), 1.0)


def test_cross_scenario_validates_on_whole_sequences_and_tests_the_held_out_site(twin, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), protocol="cross_scenario")
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    tasks = benchmark.tasks(args)
    assert [name for name, _, _ in tasks] == ["twin1", "twin4"]
    # twin4 alone trains for twin1: with seed 0 its held-out tenth is one pass too short for a window.
    with pytest.raises(ValueError, match=r"no \['validation'\] windows .*twin4.*seed 0"):
        benchmark.load_task(*tasks[0][1:], 0, args, config)
    _, splits = benchmark.load_task(*tasks[0][1:], 2, args, config)
    passes = {name: set(zip(split["scenario"], split["seq_index"], strict=True))
              for name, split in splits["hard"].items()}
    assert {s for s, _ in passes["test"]} == {"twin1"} and {s for s, _ in passes["train"]} == {"twin4"}
    assert passes["validation"] and not passes["validation"] & passes["train"]
    assert splits["soft"]["validation"]["sample_index"] == splits["hard"]["validation"]["sample_index"]
