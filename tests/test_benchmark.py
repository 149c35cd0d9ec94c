"""`wmlm benchmark` end to end on a small twin: every method scored on the same windows, the documented schema."""

import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel

import modeling_wmlm
from dataset_scripts.digital_twin import generate_scenarios
from modeling_wmlm import WMLMConfig
from wmlm import benchmark, cli

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"method", "scenario", "seed", "protocol", "train_fraction", "validation_top1", "top1", "top3", "top5",
               "dba", "power_loss_db", "within_0p5db", "within_1db", "ece", "sweep", "confusion"}
FAST = ["--preset", "wmlm-tiny", "--epochs", "1", "--baseline_epochs", "1", "--ensemble", "1"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    generate_scenarios(root, ["twin1", "twin4"], num_samples=300, image_size=(48, 27))
    return root


@pytest.fixture(scope="module")
def task(twin, tmp_path_factory):
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path_factory.mktemp("out")))
    return next(benchmark.tasks(args, WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])))


def test_benchmark_writes_the_documented_records_and_plots(twin, tmp_path):
    cli.main(["benchmark", "--data_dir", str(twin), "--seeds", "0", *FAST, "--output_dir", str(tmp_path),
              "--methods", *benchmark.METHODS])
    records = json.loads((tmp_path / "results.json").read_text())
    assert {(r["scenario"], r["method"]) for r in records} == {
        (s, m) for s in ("twin1", "twin4") for m in benchmark.METHODS}
    for record in records:
        assert set(record) == RECORD_KEYS | ({"chosen_settings"} if record["method"] == "gru" else set())
        assert len(record["top1"]) == 3 and all(a <= b <= c for a, b, c in zip(
            record["top1"], record["top3"], record["top5"], strict=True))
        assert 0 <= record["dba"] <= 1 and min(record["power_loss_db"]) >= 0
        total = sum(count for _, _, count in record["confusion"])  # the heatmap's cells hold every test step
        diagonal = sum(count for true, predicted, count in record["confusion"] if true == predicted)
        assert diagonal / total == pytest.approx(np.mean(record["top1"]))
    table = (tmp_path / "results.md").read_text()
    assert "| twin1 | 1 | persistence |" in table and "| mean | 1 | interpolation_ceiling |" in table
    for gru in (r for r in records if r["method"] == "gru"):  # what the GRU's search chose, for the reader
        chosen = gru["chosen_settings"]
        assert (f"| gru | {gru['scenario']} | 1 | 0 | hidden_size {chosen['hidden_size']}, learning_rate "
                f"{chosen['learning_rate']}, pretrained {chosen['pretrained']}, modalities "
                f"{'+'.join(chosen['modalities'])} |") in table
    for plot in ("top1_per_horizon", "top1_per_scenario", "sweep_curve", "confusion"):
        assert (tmp_path / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baselines_predict_what_they_claim(task):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], epochs=1)
    test, train = task.data["test"], task.data["train"]
    # The power-forecast labels and the beam-prediction labels describe the same windows.
    np.testing.assert_array_equal(np.array(task.splits["hard"]["test"]["labels"]), test["labels"].argmax(-1))

    persistence = benchmark.persistence(task, args)["test"]
    np.testing.assert_array_equal(persistence.argmax(-1), np.repeat(test["beam_index"][:, -1:], 3, axis=1))

    knn = benchmark.knn_gps(task, args, k=1)["test"]
    last = test["gps_position"][:, -1]
    nearest = np.linalg.norm(last[:, None] - train["gps_position"][None, :, -1], axis=-1).argmin(1)
    np.testing.assert_array_equal(knn.argmax(-1), train["labels"].argmax(-1)[nearest])
    np.testing.assert_allclose(knn.sum(-1), 1.0)


def test_interpolation_ceiling_reads_the_measured_neighbours_of_each_future_step(task):
    split = task.data["test"]
    following = benchmark.following_power(split)
    starts = {(s, i[0]): n for n, (s, i) in enumerate(zip(split["scenario"], split["sample_index"], strict=True))}
    ends_of_passes = 0
    for n, (scenario, index) in enumerate(zip(split["scenario"], split["sample_index"], strict=True)):
        successor = starts.get((scenario, index[1]))
        if successor is None:  # the window ends its pass: the step before stands in
            ends_of_passes += 1
            np.testing.assert_array_equal(following[n], split["labels"][n, -2])
        else:
            np.testing.assert_array_equal(following[n], split["labels"][successor, -1])
    assert 0 < ends_of_passes < len(following) // 2
    # A ceiling that sees both neighbours beats repeating the last beam on the same windows.
    args = benchmark.BenchmarkArguments(data_dir=["unused"], baseline_epochs=20, ensemble=1)
    hits = {name: benchmark.METHODS[name](task, args)["test"].argmax(-1) == split["labels"].argmax(-1)
            for name in ("interpolation_ceiling", "persistence")}
    assert hits["interpolation_ceiling"].mean() > hits["persistence"].mean()


def test_wmlm_trains_with_its_preset_recipe(task, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", output_dir=str(tmp_path))
    full = benchmark.recipe_arguments(args, "full", task, seed=7)[1]
    lora_model, lora = benchmark.recipe_arguments(args, "lora", task, seed=7)
    assert (full.learning_rate, full.num_train_epochs, full.seed, full.report_to) == (1e-3, 15, 7, [])
    assert lora_model.mode == "lora" and lora_model.lora_r == 8 and lora_model.soft_labels == args.soft_labels
    assert not benchmark.recipe_arguments(replace(args, soft_labels=False), "full", task, 0)[0].soft_labels
    assert str(tmp_path) in full.output_dir and full.output_dir != lora.output_dir
    with pytest.raises(FileNotFoundError, match="recipes/wmlm-base/adapt/config_full.yaml"):
        benchmark.recipe_arguments(benchmark.BenchmarkArguments(data_dir=["x"], preset="wmlm-base"), "full", task, 0)
    small_sites = replace(args, wmlm_recipe_overrides=["per_device_train_batch_size=16", "learning_rate=3e-3"])
    full = benchmark.recipe_arguments(small_sites, "full", task, seed=7)[1]
    assert (full.per_device_train_batch_size, full.learning_rate, full.num_train_epochs) == (16, 3e-3, 15)
    with pytest.raises(ValueError, match="takes key=value, got 'per_device_train_batch_size'"):
        benchmark.recipe_arguments(replace(args, wmlm_recipe_overrides=["per_device_train_batch_size"]), "full",
                                   task, 0)
    with pytest.raises(ValueError, match="the benchmark's own --soft_labels"):
        benchmark.recipe_arguments(replace(args, wmlm_recipe_overrides=["soft_labels=true"]), "full", task, 0)


def test_wmlm_applies_its_recipe_model_settings(task, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", output_dir=str(tmp_path))

    def trained(mode, args=args):  # the model as the benchmark's Trainer would train it
        return benchmark.recipe_trainer(*benchmark.scratch_model(task, args), task, args, mode, 0).model

    frozen = trained("finetune", replace(args, wmlm_recipe_overrides=["freeze_encoders=true"]))
    assert not any(p.requires_grad for p in frozen.wmlm.encoders.parameters())
    assert all(p.requires_grad for p in frozen.wmlm.layers.parameters())
    assert all(p.requires_grad for p in frozen.beam_head.parameters())
    assert all(p.requires_grad for p in trained("finetune").parameters())
    lora = trained("lora")
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert isinstance(lora, PeftModel) and trainable
    assert all("lora_" in name or "beam_head" in name for name in trainable)


def test_cross_scenario_validates_on_whole_sequences_and_tests_the_held_out_site(twin, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), protocol="cross_scenario")
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    # twin4 alone trains for twin1: with seed 0 its held-out tenth is one pass too short for a window.
    with pytest.raises(ValueError, match=r"no \['validation'\] windows .*twin4.*seed 0"):
        next(benchmark.tasks(args, config))
    args.seeds = [2]
    task = next(benchmark.tasks(args, config))
    assert task.scenario == "twin1"
    passes = {name: set(zip(split["scenario"], split["seq_index"], strict=True))
              for name, split in task.splits["hard"].items()}
    assert {s for s, _ in passes["test"]} == {"twin1"} and {s for s, _ in passes["train"]} == {"twin4"}
    assert passes["validation"] and not passes["validation"] & passes["train"]
    assert task.splits["soft"]["validation"]["sample_index"] == task.splits["hard"]["validation"]["sample_index"]


def test_few_shot_adapts_on_a_fraction_of_the_in_scenario_training_passes(tmp_path):
    root = tmp_path / "twin"
    generate_scenarios(root, ["twin1", "twin3", "twin4"], num_samples=300, image_size=(48, 27))
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    common = {"data_dir": [str(root)], "output_dir": str(tmp_path / "out"), "seeds": [0]}
    in_scenario = next(benchmark.tasks(benchmark.BenchmarkArguments(**common), config))
    args = benchmark.BenchmarkArguments(**common, protocol="few_shot", train_fractions=[0.3], epochs=1, ensemble=1,
                                        preset="wmlm-tiny")
    task = next(benchmark.tasks(args, config))
    assert (task.scenario, task.train_fraction, task.source.scenario) == ("twin1", 0.3, "twin1")
    # The same test windows as in_scenario; a third of its training passes, the same for both label kinds.
    assert task.splits["hard"]["test"]["sample_index"] == in_scenario.splits["hard"]["test"]["sample_index"]
    passes = {kind: set(zip(split["train"]["scenario"], split["train"]["seq_index"], strict=True))
              for kind, split in task.splits.items()}
    every = set(zip(in_scenario.splits["hard"]["train"]["scenario"], in_scenario.splits["hard"]["train"]["seq_index"],
                    strict=True))
    assert passes["hard"] == passes["soft"] < every and len(passes["hard"]) == round(0.3 * len(every))
    np.testing.assert_array_equal(task.data["train"]["sample_index"], task.splits["hard"]["train"]["sample_index"])
    # The source model trained on the other two scenarios, never the held-out one.
    assert {s for s in task.source.data["train"]["scenario"]} == {"twin3", "twin4"}
    assert set(task.source.data["test"]["scenario"]) == {"twin1"}
    probabilities = benchmark.wmlm(task, args)
    assert probabilities["test"].shape == (len(task.data["test"]["labels"]), 3, 64)
    np.testing.assert_allclose(probabilities["test"].sum(-1), 1.0, rtol=1e-5)
    # The adapter is kept, ready for PeftModel.from_pretrained and its card.
    (adapter,) = (tmp_path / "out" / "adapters").iterdir()
    assert adapter.name == "twin1-seed0-fraction0.3-member0" and (adapter / "adapter_config.json").is_file()
    summary = json.loads((adapter / "training_summary.json").read_text())
    assert summary["datasets"] == ["twin1"] and summary["train_fraction"] == 0.3


def test_zero_shot_scores_the_source_models_on_the_few_shot_test_windows(twin, tmp_path):
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), protocol="few_shot",
                                        held_out=["twin4"], train_fractions=[0.0, 0.3], seeds=[1])
    zero, few = benchmark.tasks(args, config)
    assert (zero.scenario, zero.train_fraction, zero.source, few.train_fraction) == ("twin4", 0.0, None, 0.3)
    assert zero.splits["hard"]["test"]["sample_index"] == few.splits["hard"]["test"]["sample_index"]
    assert set(zero.data["train"]["scenario"]) == set(zero.data["validation"]["scenario"]) == {"twin1"}
    with pytest.raises(ValueError, match=r"held_out names \['twin9'\]"):
        next(benchmark.tasks(replace(args, held_out=["twin9"]), config))


def test_a_given_source_checkpoint_must_not_have_seen_the_held_out_site(task, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", epochs=1, output_dir=str(tmp_path))
    model, processor = benchmark.scratch_model(task, args)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    given = replace(args, protocol="few_shot", wmlm_model_name_or_path=str(tmp_path / "model"))
    with pytest.raises(ValueError, match="has no training_summary.json"):
        benchmark.trained_model(task, given, seed=0)
    summary = tmp_path / "model" / "training_summary.json"
    summary.write_text(json.dumps({"datasets": ["twin4", task.scenario]}))
    with pytest.raises(ValueError, match=f"was trained on {task.scenario}"):
        benchmark.trained_model(task, given, seed=0)
    summary.write_text(json.dumps({"datasets": ["twin4"]}))
    loaded, _ = benchmark.trained_model(task, given, seed=0)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not (tmp_path / "models").exists()  # nothing trained


def test_the_recipe_runs_under_accelerate_launch(twin, tmp_path):
    """recipes/benchmark.py with the tiny preset's YAML, as the recipe README launches it."""
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(ROOT / "recipes/accelerate_configs/cpu.yaml"), str(ROOT / "recipes/benchmark.py"),
         str(ROOT / "recipes/wmlm-tiny/benchmark/config.yaml"), "--data_dir", str(twin / "twin1"), "--methods",
         "wmlm", "persistence", "--epochs", "1", "--plots", "false", "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())
    assert [(r["scenario"], r["method"]) for r in records] == [("twin1", "wmlm"), ("twin1", "persistence")]
    assert "benchmark: 100%" in result.stderr  # tqdm progress


def test_multi_site_source_holds_every_training_pass_and_no_test_pass(twin, tmp_path):
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), seeds=[1])
    tasks = list(benchmark.tasks(args, WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])))
    assert [t.scenario for t in tasks] == ["twin1", "twin4"] and tasks[0].source is tasks[1].source

    def passes(split):
        return set(zip(split["scenario"], split["seq_index"], strict=True))

    source = tasks[0].source.splits["hard"]
    for name in ("train", "validation"):
        assert passes(source[name]) == set().union(*(passes(t.splits["hard"][name]) for t in tasks))
    for task in tasks:  # each scenario split on its own: the same test passes as without multi_site
        assert not passes(task.splits["hard"]["test"]) & (passes(source["train"]) | passes(source["validation"]))
    alone = next(benchmark.tasks(benchmark.BenchmarkArguments(data_dir=[str(twin / "twin4")], seeds=[1],
                                                              output_dir=str(tmp_path)),
                                 WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])))
    assert alone.source is None and passes(alone.splits["hard"]["test"]) == passes(tasks[1].splits["hard"]["test"])


def test_reversed_train_windows_reach_every_method_and_no_validation_or_test_window(twin, tmp_path):
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    args = benchmark.BenchmarkArguments(data_dir=[str(twin / "twin4")], output_dir=str(tmp_path), seeds=[1])
    forward = next(benchmark.tasks(args, config))
    both = next(benchmark.tasks(replace(args, reversed_train_windows=True), config))
    n = len(forward.data["train"]["labels"])
    for name in ("validation", "test"):
        np.testing.assert_array_equal(both.data[name]["beam_power"], forward.data[name]["beam_power"])
    train = both.data["train"]
    np.testing.assert_array_equal(train["beam_power"][:n], forward.data["train"]["beam_power"])
    whole = np.concatenate([train["beam_power"], train["labels"]], 1)  # (2n, 8, 64)
    forward_rows = {tuple(w): i for i, w in enumerate(forward.data["train"]["sample_index"].tolist())}
    for i in range(n, 2 * n, 17):
        original = forward_rows[tuple(train["sample_index"][i][::-1].tolist())]
        np.testing.assert_array_equal(whole[i], whole[original][::-1])
    assert both.splits["hard"]["train"].num_rows == 2 * n
    np.testing.assert_array_equal(both.splits["hard"]["train"]["labels"], train["labels"].argmax(-1))


def test_trained_models_are_kept_under_a_key_of_their_data_and_settings(twin, task, tmp_path, monkeypatch):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", epochs=1, output_dir=str(tmp_path))
    model, _ = benchmark.trained_model(task, args, seed=3)
    (folder,) = (tmp_path / "models").iterdir()
    again, _ = benchmark.trained_model(task, args, seed=3)  # loaded, not trained: the same weights
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    benchmark.trained_model(task, replace(args, epochs=2), seed=3)
    benchmark.trained_model(task, args, seed=4)
    assert len(list((tmp_path / "models").iterdir())) == 3 and folder.name.startswith("twin1-0-3-")
    # The same windows loaded into another output_dir (another datasets cache) find the same model.
    elsewhere = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path / "elsewhere"))
    same = next(benchmark.tasks(elsewhere, WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])))
    assert benchmark.windows_digest(same) == benchmark.windows_digest(task)
    benchmark.trained_model(same, replace(args, model_cache_dir=str(tmp_path / "models")), seed=3)
    assert len(list((tmp_path / "models").iterdir())) == 3
    # Other modelling code trains its own model: one cached by older code may lack weights the new code has.
    code = shutil.copytree(Path(modeling_wmlm.__file__).parent, tmp_path / "code",
                           ignore=shutil.ignore_patterns("__pycache__"))
    assert benchmark.code_digest(code) == benchmark.code_digest()
    with (code / "modeling_wmlm.py").open("a") as edited:
        edited.write("# an edit\n")
    edited_digest = benchmark.code_digest(code)
    monkeypatch.setattr(benchmark, "code_digest", lambda: edited_digest)
    benchmark.trained_model(task, args, seed=3)
    assert len(list((tmp_path / "models").iterdir())) == 4


def test_wmlm_reads_its_own_modalities_and_the_gru_searches_power_alone(task, tmp_path, monkeypatch):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", epochs=1, output_dir=str(tmp_path),
                                        wmlm_modalities=["beam"], baseline_epochs=1, ensemble=1)
    model, processor = benchmark.trained_model(task, args, seed=0)
    assert model.config.modalities == ["beam"] and processor.feature_extractor.modalities == ["beam"]
    assert benchmark.trained_model(task, replace(args, wmlm_modalities=["beam", "gps"]), 0)[0].config.modalities == [
        "beam", "gps"]
    widths, scores, fit = [], [], benchmark.fit

    def fit_and_note(model, features, *rest):
        widths.append(features["train"].shape[-1])
        scores.append(fit(model, features, *rest))
        return scores[-1]

    monkeypatch.setattr(benchmark, "_SCRATCH_GRUS", {})
    monkeypatch.setattr(benchmark, "fit", fit_and_note)
    task = replace(task, source=None)  # every search fit is then a scratch GRU's, in the grid's order
    probabilities = benchmark.gru(task, args)
    num_beams = task.data["train"]["beam_power"].shape[-1]
    assert sorted(set(widths)) == [num_beams, num_beams + 2]  # power alone, power + east/north
    # The record names the searched setting best on validation (one member: no fit after the search).
    grid = [(settings, modalities) for settings in benchmark.GRU_GRID for modalities in (["beam", "gps"], ["beam"])]
    settings, modalities = grid[int(np.argmax([best for best, _ in scores]))]
    record = benchmark.record("gru", task, args, probabilities, benchmark.load_metrics())
    assert record["chosen_settings"] == {**settings, "pretrained": False, "modalities": modalities}
    json.dumps(record)


def test_in_scenario_the_multi_site_model_votes_as_it_is_beside_its_fine_tuned_members(task, tmp_path, monkeypatch):
    args = benchmark.BenchmarkArguments(data_dir=["unused"], preset="wmlm-tiny", epochs=1, baseline_epochs=1,
                                        ensemble=1, output_dir=str(tmp_path))
    voted, average = [], benchmark.average
    monkeypatch.setattr(benchmark, "average", lambda members: voted.append(members) or average(members))
    benchmark.wmlm(task, args)
    source = benchmark.source_as_it_is(task, args)  # from the cache, as trained for the first member
    (as_is, fine_tuned), = voted
    np.testing.assert_allclose(as_is["test"], benchmark.predictions(source, task)["test"])
    assert not np.allclose(fine_tuned["test"], as_is["test"])


def test_the_zero_shot_gru_and_the_fine_tuned_starts_share_the_source_gru(twin, tmp_path, monkeypatch):
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], output_dir=str(tmp_path), protocol="few_shot",
                                        held_out=["twin4"], train_fractions=[0.0, 0.3], seeds=[0], baseline_epochs=1,
                                        ensemble=1)
    zero, few = benchmark.tasks(args, config)
    fitted, fit = [], benchmark.fit
    monkeypatch.setattr(benchmark, "_SCRATCH_GRUS", {})
    monkeypatch.setattr(benchmark, "fit", lambda model, features, *rest: fitted.append(
        len(features["train"])) or fit(model, features, *rest))
    benchmark.gru(zero, args)
    grid = len(benchmark.GRU_GRID) * 2  # power + GPS, power alone
    assert fitted == [len(zero.data["train"]["labels"])] * grid  # the source's GRUs, trained from scratch
    benchmark.gru(few, args)  # from scratch on the target and from the source's GRUs: no source GRU again
    assert fitted[grid:] == [len(few.data["train"]["labels"])] * 2 * grid
    # The cache is keyed by what determines a GRU: other epochs train again, with seeded initial weights.
    settings = {**benchmark.GRU_GRID[0], "modalities": ("beam",)}
    first = benchmark.scratch_gru(zero, replace(args, baseline_epochs=2), settings, seed=0)
    assert len(fitted) == 3 * grid + 1
    monkeypatch.setattr(benchmark, "_SCRATCH_GRUS", {})
    again = benchmark.scratch_gru(zero, replace(args, baseline_epochs=2), settings, seed=0)
    assert first[0] == again[0]
    for (name, a), b in zip(first[1].state_dict().items(), again[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_comparison_table_against_the_baseline_and_the_ceiling():
    def record(method, seed, top1):
        return {"method": method, "scenario": "s1", "seed": seed, "train_fraction": 1.0, "top1": top1,
                "top3": [0.9] * 3, "within_0p5db": [0.8] * 3}

    records = [record("wmlm", 0, [0.6] * 3), record("wmlm", 1, [0.4, 0.5, 0.6]), record("gru", 0, [0.5] * 3),
               record("interpolation_ceiling", 0, [0.55] * 3)]
    table = benchmark.comparison_table(records)
    assert "| s1 | 1 | 0.550 / 0.500 / 0.550 | 100.0% | 0.900 / 0.900 | 0.800 / 0.800 |" in table
    assert benchmark.comparison_table(records[:3]) == ""  # no ceiling run: no table


def test_report_merges_runs_split_over_seeds_into_the_tables_of_one_run(twin, tmp_path):
    def run(name, *seeds):
        cli.main(["benchmark", "--data_dir", str(twin), "--seeds", *seeds, *FAST, "--methods", "persistence",
                  "knn_gps", "--output_dir", str(tmp_path / name)])
        return str(tmp_path / name / "results.json")

    together, first, second = run("together", "0", "1"), run("seed0", "0"), run("seed1", "1")
    cli.main(["report", "--results", first, second, "--output_dir", str(tmp_path / "merged")])
    assert (tmp_path / "merged/results.md").read_text() == (tmp_path / "together/results.md").read_text()
    assert "± 0.000 |" not in (tmp_path / "merged/results.md").read_text()  # two seeds, two splits: a spread
    assert (tmp_path / "merged/confusion.png").is_file()
    with pytest.raises(ValueError, match=r"both hold persistence on twin1, seed 0"):
        benchmark.merged_records([first, together])
    cross = json.loads(Path(second).read_text())
    (tmp_path / "cross.json").write_text(json.dumps([{**r, "protocol": "cross_scenario"} for r in cross]))
    with pytest.raises(ValueError, match=r"protocols \['cross_scenario', 'in_scenario'\]"):
        benchmark.merged_records([first, str(tmp_path / "cross.json")])
    with pytest.raises(FileNotFoundError, match="no such results.json"):
        benchmark.merged_records([str(tmp_path / "missing.json")])


def test_report_sets_few_shot_against_in_scenario_training_seed_by_seed(tmp_path):
    def record(method, protocol, seed, top1, fraction):
        return {"method": method, "scenario": "s1", "seed": seed, "protocol": protocol, "train_fraction": fraction,
                **{key: [top1] * 3 for key in ("top1", "top3", "within_0p5db", "power_loss_db")},
                "validation_top1": top1, "dba": top1}

    few = [record("wmlm", "few_shot", 0, 0.45, 0.1), record("wmlm", "few_shot", 1, 0.5, 0.1),
           record("persistence", "few_shot", 0, 0.2, 0.1)]
    full = [record("wmlm", "in_scenario", 0, 0.5, 1.0), record("wmlm", "in_scenario", 1, 0.5, 1.0),
            record("wmlm", "in_scenario", 2, 0.9, 1.0)]  # seed 2 has no few-shot run: not paired
    for name, records in (("few", few), ("full", full)):
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
    cli.main(["report", "--results", str(tmp_path / "few.json"), "--in_scenario_results", str(tmp_path / "full.json"),
              "--plots", "false", "--output_dir", str(tmp_path / "out")])
    table = (tmp_path / "out/results.md").read_text()
    assert "| s1 | 0.1 | wmlm | 0 1 | 0.475 | 0.500 | 95.0% | 90.0%, 100.0% |" in table
    assert "| s1 | 0.1 | persistence |" in table.split("in-scenario top-1")[0]  # in the results table only
    assert "| persistence | 0 |" not in table  # no in-scenario persistence to set it against
    with pytest.raises(ValueError, match="pass few_shot results.json files as results"):
        cli.main(["report", "--results", str(tmp_path / "full.json"), "--in_scenario_results",
                  str(tmp_path / "few.json"), "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()  # refused before any file is written
    with pytest.raises(ValueError, match="hold no \\(method, scenario, seed\\) of the few_shot results"):
        benchmark.in_scenario_ratio_table(few, [{**r, "scenario": "s2"} for r in full])


@pytest.mark.parametrize("bad, message", [
    ({"protocol": "zero_shot"}, "protocol must be one of"),
    ({"methods": ["wmlm", "lstm"]}, r"unknown methods \['lstm'\]"),
    ({"ensemble": 0}, "ensemble must be >= 1"),
    ({"train_fractions": [1.5]}, r"train_fractions must lie in \[0, 1\]"),
    ({"held_out": ["twin1"]}, "use protocol cross_scenario or few_shot"),
    ({"wmlm_modalities": ["vision"]}, r"wmlm_modalities \['vision'\] must be a subset of modalities"),
])
def test_bad_benchmark_arguments_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        benchmark.BenchmarkArguments(data_dir=["x"], **bad)


def test_a_misspelled_benchmark_argument_is_an_error():
    with pytest.raises(ValueError, match="--ensmble"):
        cli.main(["benchmark", "--data_dir", "x", "--ensmble", "2"])


def test_multi_site_as_is_scores_the_benchmarks_cached_multi_site_model_and_its_members(twin, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import multi_site_as_is

    argv = ["--data_dir", str(twin), "--seeds", "0", *FAST, "--output_dir", str(tmp_path)]
    multi_site_as_is.main(argv)  # before any benchmark run: the multi-site model alone, trained on the cache miss
    lines = [line for line in capsys.readouterr().out.splitlines() if "as it is" in line]  # DeepSpeed prints too
    assert [line.split(":")[0] for line in lines] == ["twin1 seed 0, as it is", "twin4 seed 0, as it is",
                                                      "mean, as it is"]
    (model,) = (tmp_path / "models").iterdir()  # one multi-site model, in the benchmark's own cache
    assert model.name.startswith("twin1+twin4-0-") and (model / "model.safetensors").is_file()

    cli.main(["benchmark", *argv, "--methods", "wmlm"])
    records = {r["scenario"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    capsys.readouterr()
    multi_site_as_is.main(argv)
    scored = dict(line.split(": ") for line in capsys.readouterr().out.splitlines() if ", test " in line)
    for scenario, record in records.items():  # the benchmark's WMLM is the fine-tuned members beside the source
        assert scored[f"{scenario} seed 0, fine-tuned + as it is"] == \
            f"validation {record['validation_top1']:.3f}, test {np.mean(record['top1']):.3f}"
    assert "mean, fine-tuned" in scored
    with pytest.raises(SystemExit, match="--protocol in_scenario --multi_site true"):
        multi_site_as_is.main([*argv, "--multi_site", "false"])
    with pytest.raises(SystemExit, match="or --protocol few_shot"):  # cross_scenario has no per-site model to vote
        multi_site_as_is.main([*argv, "--protocol", "cross_scenario"])


def test_source_per_member_reproduces_the_benchmark_and_gives_each_member_its_own_source(twin, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import source_per_member

    argv = ["--data_dir", str(twin), "--seeds", "0", *FAST, "--ensemble", "2", "--output_dir", str(tmp_path)]
    cli.main(["benchmark", *argv, "--methods", "wmlm"])
    records = {r["scenario"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    capsys.readouterr()
    source_per_member.main(argv)
    scored = dict(line.split(": ") for line in capsys.readouterr().out.splitlines() if ", test " in line)
    for scenario, record in records.items():  # the recipe's ensemble, rebuilt, is the benchmark's record
        assert scored[f"{scenario} seed 0, one source, fine-tuned + as it is (the recipe)"] == \
            f"validation {record['validation_top1']:.3f}, test {np.mean(record['top1']):.3f}"
    assert sorted(m.name.split("-")[2] for m in (tmp_path / "models").iterdir()) == ["0", "1"]  # one per member
    assert {"mean, own sources, fine-tuned", "mean, own sources, fine-tuned + each as it is"} <= set(scored)
    with pytest.raises(SystemExit, match="--multi_site true"):
        source_per_member.main([*argv, "--multi_site", "false"])


@pytest.mark.parametrize("augmentation, option, value", [("backwards", "reversed_train_windows", True),
                                                           ("at 2x speed", "faster_train_windows", [2])])
def test_augmented_source_augments_the_multi_site_stage_alone(twin, tmp_path, capsys, monkeypatch, augmentation,
                                                              option, value):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import augmented_source

    flag = ["--" + option, *(map(str, value) if isinstance(value, list) else [str(value).lower()])]
    argv = ["--data_dir", str(twin), "--seeds", "0", *FAST, "--output_dir", str(tmp_path)]
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], seeds=[0], preset="wmlm-tiny", epochs=1,
                                        baseline_epochs=1, ensemble=1, output_dir=str(tmp_path))
    config = benchmark.wmlm_config(args)
    forward = list(benchmark.tasks(args, config))
    augmented = next(benchmark.tasks(replace(args, **{option: value}), config)).source
    seen, wmlm = [], benchmark.wmlm
    monkeypatch.setattr(benchmark, "wmlm", lambda task, args: seen.append(task) or wmlm(task, args))
    augmented_source.main([*argv, *flag])
    assert [t.scenario for t in seen] == [t.scenario for t in forward]
    for task, plain in zip(seen, forward, strict=True):  # each site's windows as measured, its source's augmented
        assert benchmark.windows_digest(task) == benchmark.windows_digest(plain)
        assert benchmark.windows_digest(task.source) == benchmark.windows_digest(augmented)
    assert len(augmented.data["train"]["labels"]) > len(forward[0].source.data["train"]["labels"])
    models = sorted((tmp_path / "models").iterdir())
    benchmark.trained_model(augmented, args, seed=0)  # the one model the script trained: a cache hit
    assert len(models) == 1 and sorted((tmp_path / "models").iterdir()) == models
    assert f"mean, multi-site stage also {augmentation}: validation" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--reversed_train_windows true or --faster_train_windows K"):
        augmented_source.main(argv)


def test_multi_site_as_is_scores_the_few_shot_adapters_beside_their_source(twin, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import multi_site_as_is

    argv = ["--data_dir", str(twin), "--seeds", "0", *FAST, "--output_dir", str(tmp_path), "--protocol", "few_shot",
            "--held_out", "twin4", "--train_fractions", "0.3"]
    cli.main(["benchmark", *argv, "--methods", "wmlm"])
    (record,) = json.loads((tmp_path / "results.json").read_text())
    capsys.readouterr()
    multi_site_as_is.main(argv)
    scored = dict(line.split(": ") for line in capsys.readouterr().out.splitlines() if ", test " in line)
    # The benchmark's few-shot WMLM is its adapter alone, reloaded here from disk onto the cached source.
    assert scored["twin4 seed 0, fine-tuned"] == \
        f"validation {record['validation_top1']:.3f}, test {np.mean(record['top1']):.3f}"
    assert {"twin4 seed 0, as it is", "twin4 seed 0, fine-tuned + as it is"} < set(scored)


def test_aligned_source_starts_the_multi_site_model_from_stage_1_on_its_training_passes(twin, tmp_path, capsys,
                                                                                        monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import aligned_source

    argv = ["--data_dir", str(twin), "--seeds", "0", *FAST, "--output_dir", str(tmp_path)]
    args = benchmark.BenchmarkArguments(data_dir=[str(twin)], seeds=[0], preset="wmlm-tiny", output_dir=str(tmp_path))
    for seed in (0, 1):  # stage 1 sees the passes the multi-site model trains and validates on, seed by seed
        source = next(benchmark.tasks(replace(args, seeds=[seed]), benchmark.wmlm_config(args))).source
        samples = aligned_source.training_samples(source, str(tmp_path / "cache"), num_beams=64)
        for split in ("train", "validation"):
            assert set(zip(samples[split]["scenario"], samples[split]["seq_index"], strict=True)) == set(zip(
                source.splits["hard"][split]["scenario"], source.splits["hard"][split]["seq_index"], strict=True))

    aligned, starts = [], []
    align, trainer = aligned_source.align, benchmark.wmlm_trainer
    monkeypatch.setattr(aligned_source, "align", lambda *a: aligned.append(align(*a)) or aligned[-1])
    monkeypatch.setattr(benchmark, "wmlm_trainer", lambda model, *a, **k: starts.append(
        {k: v.clone() for k, v in model.state_dict().items()}) or trainer(model, *a, **k))
    aligned_source.main(argv)
    (alignment,) = aligned
    beam = alignment.encoders.encoders["beam"].state_dict()
    for name, value in beam.items():  # stage 2's first model starts from stage 1's beam encoder
        assert torch.equal(starts[0][f"wmlm.encoders.encoders.beam.{name}"], value)
    assert not all(torch.equal(start[f"wmlm.encoders.encoders.beam.{name}"], value)  # then trains it
                   for start in starts[1:] for name, value in beam.items())
    summary = json.loads((tmp_path / "aligned-multi-site-0" / "training_summary.json").read_text())
    assert summary["datasets"] == ["twin1", "twin4"] and "seed 0" in summary["split"]
    out = capsys.readouterr().out
    assert "mean, multi-site model from stage-1 encoders, as it is: validation" in out
    assert "mean, the benchmark's WMLM from it: validation" in out

    reuse = [*argv[:-1], str(tmp_path / "reused"), "--reuse_from", str(tmp_path)]
    aligned_source.main(reuse)  # the same multi-site model, nothing aligned or trained before fine-tuning
    assert len(aligned) == 1 and [line for line in capsys.readouterr().out.splitlines() if "as it is" in line] == \
        [line for line in out.splitlines() if "as it is" in line]
    shutil.copytree(tmp_path / "aligned-multi-site-0", tmp_path / "aligned-multi-site-1")
    with pytest.raises(SystemExit, match="seed 0.*not on.*seed 1"):  # a model of another split is refused
        aligned_source.main([*reuse, "--seeds", "1"])
    with pytest.raises(SystemExit, match="--multi_site true"):
        aligned_source.main([*argv, "--multi_site", "false"])


def test_beam_extrapolation_extends_the_track_and_finds_the_sub_beam_centroid():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import beam_extrapolation

    track = np.array([[0.0, 1, 2, 3, 4], [9, 7, 5, 3, 1]])
    np.testing.assert_allclose(beam_extrapolation.line_forecast(track, 3), [[5, 6, 7], [-1, -3, -5]], atol=1e-9)
    np.testing.assert_allclose(beam_extrapolation.line_forecast(track, 2, damping=0.5), [[4.5, 5], [0, -1]], atol=1e-9)
    power = np.full((1, 2, 64), 1e-6)
    power[0, :, 10] = 1.0
    power[0, 0, [9, 11]] = 0.5  # symmetric: the centroid is the best beam
    power[0, 1, 11] = 10 ** -0.1  # a neighbour 1 dB down on one side: weights 1 and e^-1 at 1 dB temperature
    np.testing.assert_allclose(beam_extrapolation.centroids(power)[0], [10, 10 + np.exp(-1) / (1 + np.exp(-1))],
                               atol=1e-6)
    future = np.zeros((2, 3, 64))
    future[0, :, [5, 6, 7]] = np.eye(3)  # the best beams 5, 6, 7, then 0, 0, 0
    np.testing.assert_allclose(beam_extrapolation.top1_per_step(np.array([[5.2, 6.4, 9], [-1, -3, -5]]), future),
                               [1, 1, 0.5])


def test_power_level_cue_reads_the_speeds_and_the_level_that_log_minmax_divides_away():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import power_level_cue

    assert power_level_cue.spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 40, 50, 90])) == pytest.approx(1)
    assert power_level_cue.spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1)
    # Four windows: history speeds 1, 1, 2, 2 beams a step; future speeds 1, 2, 3, 4, rising with the level.
    starts, history_speed, future_speed = np.array([10, 10, 10, 10]), np.array([1, 1, 2, 2]), np.array([1, 2, 3, 4])
    history = starts[:, None] + history_speed[:, None] * np.arange(5)  # (4, 5) best beam per history step
    future = history[:, -1:] + future_speed[:, None] * np.arange(1, 4)  # (4, 3)
    levels_db = np.array([-12.0, -9, -6, -3])
    power = np.full((4, 5, 64), 1e-3) * 10 ** (levels_db / 10)[:, None, None]  # 30 dB below each window's best
    power[np.arange(4)[:, None], np.arange(5), history] = 10 ** (levels_db / 10)[:, None]
    labels = np.eye(64)[future]  # (4, 3, 64): the future best beams
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant column once divided by a zero spread, with only a warning
        values = power_level_cue.correlations({"beam_power": power, "beam_index": history, "labels": labels})
    assert values["windows"] == 4 and values["level 5-95% (dB)"] == "-11.6 to -3.5"  # interpolated percentiles
    assert values["level ~ future speed"] == pytest.approx(1)
    assert values["history speed ~ future speed"] == pytest.approx(0.894, abs=1e-3)  # ties in the history's speeds
    # The line through the speeds is 2 * history - 0.5, leaving -0.5, 0.5, -0.5, 0.5: within each history speed the
    # louder window moves faster, ranks 0-3 against 0.5, 2.5, 0.5, 2.5.
    assert values["level ~ residual"] == pytest.approx(1 / np.sqrt(5))
    assert np.isnan(values["span ~ residual"])  # every window spans 30 dB: no order to correlate
