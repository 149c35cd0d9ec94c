"""The README's main job, end to end on a small twin, and the collator between the builder and the model."""

import torch

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenario
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMForPowerForecast
from wmlm.__main__ import main
from wmlm.data import WindowCollator


def test_main_job_runs_end_to_end(tmp_path, capsys):
    main(["--output_dir", str(tmp_path), "--num_samples", "150", "--max_steps", "3", "--batch_size", "8"])
    out = capsys.readouterr().out
    assert "test top-1 beam accuracy" in out and "max |logit difference| 0.0e+00" in out
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_collator_feeds_both_stage2_heads_and_marks_missing_readings(tmp_path):
    folder = generate_scenario(tmp_path, "twin3", num_samples=40, image_size=(48, 27))
    config = WMLMConfig.from_preset("wmlm-tiny")
    collate = WindowCollator(config)
    for config_name, model_class in (("beam_prediction", WMLMForBeamPrediction),
                                     ("power_forecast", WMLMForPowerForecast)):
        data = load_deepsense6g([folder], config_name, cache_dir=str(tmp_path / "cache"),
                                split_fractions=(1.0, 0.0, 0.0))
        examples = [data["train"][i] for i in range(4)]
        examples[1]["image"][2], examples[1]["has_image"][2] = None, False
        batch = collate(examples)
        assert batch["pixel_values"].shape == (4, 5, 3, 32, 32)
        assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
        vision = config.modality_index["vision"]
        assert batch["modality_mask"].sum() == 4 * 5 * 3 - 1 and not batch["modality_mask"][1, 2, vision]
        outputs = model_class(config)(**batch)
        assert torch.isfinite(outputs.loss)
    assert batch["labels"].shape == (4, 3, 64) and batch["labels"].dtype == torch.float32
