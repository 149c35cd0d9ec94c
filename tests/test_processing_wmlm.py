"""WMLMProcessor (raw readings -> model inputs), the window collator, and ONNX export, on the tiny preset."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenario
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMForPowerForecast, WMLMProcessor
from modeling_wmlm.geo import enu_to_latlon
from wmlm.data import WindowCollator, window_kwargs

BS = (33.42, -111.93)


def raw_window(batch=2, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    east_north = rng.normal(0, 40, (batch, steps, 2))
    lat, lon = enu_to_latlon(east_north[..., 0], east_north[..., 1], *BS)
    frames = [[Image.fromarray(rng.integers(0, 255, (90 + 7 * t, 160, 3), dtype=np.uint8)) for t in range(steps)]
              for _ in range(batch)]
    return {"power": rng.random((batch, steps, 64)), "enu": east_north, "latlon": np.stack([lat, lon], -1),
            "frames": frames}


def test_processor_turns_raw_readings_into_model_inputs(tiny_config):
    processor = WMLMProcessor.from_config(tiny_config)
    raw = raw_window()
    raw["frames"][1][3] = None  # a lost frame
    inputs = processor(beam_power=raw["power"].tolist(), images=raw["frames"], gps_latlon=raw["latlon"],
                       bs_latlon=BS, labels=[[0, 5, 63], [1, 2, 3]])
    assert inputs["beam_power"].dtype == torch.float32 and inputs["beam_power"].shape == (2, 5, 64)
    np.testing.assert_allclose(inputs["gps_position"].numpy(), raw["enu"], atol=1e-3)
    assert inputs["pixel_values"].shape == (2, 5, 3, 32, 32)
    assert -1 <= inputs["pixel_values"].min() and inputs["pixel_values"].max() <= 1
    vision = tiny_config.modality_index["vision"]
    assert inputs["modality_mask"].sum() == 2 * 5 * 3 - 1 and not inputs["modality_mask"][1, 3, vision]
    assert inputs["labels"].dtype == torch.long
    outputs = WMLMForBeamPrediction(tiny_config)(**inputs)
    assert torch.isfinite(outputs.loss)
    # Metres in, the same metres out; a NaN fix is a missing reading.
    enu = raw["enu"].copy()
    enu[0, 0] = np.nan
    again = processor(beam_power=raw["power"], gps_position=enu)
    assert not again["modality_mask"][0, 0, tiny_config.modality_index["gps"]]
    assert torch.isfinite(again["gps_position"]).all()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"beam_power": -np.ones((2, 5, 64))}, ValueError, "not dB"),
        ({"beam_power": np.ones((2, 5, 32))}, ValueError, r"end in shape \(64,\)"),
        ({"beam_power": [["a"] * 64]}, TypeError, "must be numbers"),
        ({"gps_latlon": np.zeros((2, 5, 2))}, ValueError, "needs bs_latlon"),
        ({"beam_power": np.ones((2, 5, 64)), "labels": [[1, 2, 3, 4]] * 2}, ValueError, "window_kwargs"),
        ({"beam_power": np.ones((2, 5, 64)), "labels": [[1, 2, 64]] * 2}, ValueError, "0-based"),
        ({"beam_power": np.ones((2, 5, 64)), "gps_position": np.zeros((3, 5, 2))}, ValueError, "disagree"),
        ({}, ValueError, "at least one"),
    ],
)
def test_processor_rejects_bad_raw_input(tiny_config, kwargs, error, message):
    with pytest.raises(error, match=message):
        WMLMProcessor.from_config(tiny_config)(**kwargs)


def test_processor_refuses_a_modality_the_model_lacks():
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    with pytest.raises(ValueError, match=r"\['vision'\]"):
        WMLMProcessor.from_config(config)(beam_power=np.ones((1, 5, 64)), images=[[None] * 5])


def test_processor_saves_beside_the_model_and_loads_with_auto_processor(tmp_path, tiny_config):
    model, processor = WMLMForBeamPrediction(tiny_config).eval(), WMLMProcessor.from_config(tiny_config)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    assert {"processor_config.json", "processing_wmlm.py", "geo.py"} <= set(os.listdir(tmp_path / "model"))
    reloaded = AutoProcessor.from_pretrained(tmp_path / "model")
    assert type(reloaded) is WMLMProcessor and reloaded.image_processor.image_size == 32
    raw = raw_window()
    inputs = reloaded(beam_power=raw["power"], images=raw["frames"], gps_position=raw["enu"])
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs).logits
    # A fresh interpreter without the package: processor and model both come from the exported files.
    script = textwrap.dedent(f"""
        import pickle, sys
        import numpy as np
        sys.modules["modeling_wmlm"] = None
        import torch
        from transformers import AutoModelForSequenceClassification, AutoProcessor
        folder = {str(tmp_path / "model")!r}
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        raw = pickle.load(open({str(tmp_path / "raw.pkl")!r}, "rb"))
        inputs = processor(beam_power=raw["power"], images=raw["frames"], gps_position=raw["enu"])
        with torch.no_grad():
            torch.save(model(**inputs).logits, {str(tmp_path / "logits.pt")!r})
    """)
    with open(tmp_path / "raw.pkl", "wb") as handle:
        pickle.dump(raw, handle)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected)


# ----------------------------------------------------------------------------------------------------------------------
# The collator between the builder and the model


@pytest.fixture(scope="module")
def twin_folder(tmp_path_factory):
    return generate_scenario(tmp_path_factory.mktemp("twin"), "twin3", num_samples=40, image_size=(48, 27))


def test_collator_feeds_both_stage2_heads_and_marks_missing_readings(tmp_path, twin_folder, tiny_config):
    collate = WindowCollator(WMLMProcessor.from_config(tiny_config))
    for config_name, model_class in (("beam_prediction", WMLMForBeamPrediction),
                                     ("power_forecast", WMLMForPowerForecast)):
        data = load_deepsense6g([twin_folder], config_name, cache_dir=str(tmp_path / "cache"),
                                split_fractions=(1.0, 0.0, 0.0), **window_kwargs(tiny_config))
        examples = [data["train"][i] for i in range(4)]
        examples[1]["image"][2], examples[1]["has_image"][2] = None, False
        examples[2]["has_gps"][0] = False
        batch = collate(examples)
        assert batch["pixel_values"].shape == (4, 5, 3, 32, 32)
        mask = batch["modality_mask"]
        assert mask.sum() == 4 * 5 * 3 - 2
        index = tiny_config.modality_index
        assert not mask[1, 2, index["vision"]] and not mask[2, 0, index["gps"]]
        outputs = model_class(tiny_config)(**batch)
        assert torch.isfinite(outputs.loss)
    assert batch["labels"].shape == (4, 3, 64) and batch["labels"].dtype == torch.float32


def test_collator_builds_no_frames_the_model_or_the_data_lacks(tmp_path, twin_folder):
    no_vision = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    data = load_deepsense6g([twin_folder], "beam_prediction", cache_dir=str(tmp_path / "cache"),
                            split_fractions=(1.0, 0.0, 0.0), **window_kwargs(no_vision))
    examples = [data["train"][i] for i in range(3)]
    assert "pixel_values" not in WindowCollator(WMLMProcessor.from_config(no_vision))(examples)
    # A camera model on a site without frames (real DeepSense 1-5): the vision encoder gets no input at all.
    for e in examples:
        e["image"], e["has_image"] = [None] * 5, [False] * 5
    tiny = WMLMConfig.from_preset("wmlm-tiny")
    batch = WindowCollator(WMLMProcessor.from_config(tiny))(examples)
    assert "pixel_values" not in batch and not batch["modality_mask"][..., tiny.modality_index["vision"]].any()


def test_window_shape_comes_from_the_model_config(tmp_path, twin_folder):
    config = WMLMConfig.from_preset("wmlm-tiny", horizon=4)
    data = load_deepsense6g([twin_folder], "beam_prediction", cache_dir=str(tmp_path / "cache"),
                            split_fractions=(1.0, 0.0, 0.0), **window_kwargs(config))
    assert len(data["train"][0]["labels"]) == 4
    WindowCollator(WMLMProcessor.from_config(config))([data["train"][0]])
    three_step_model = WMLMProcessor.from_config(WMLMConfig.from_preset("wmlm-tiny"))
    with pytest.raises(ValueError, match=r"4 future steps.*horizon=3.*window_kwargs"):
        WindowCollator(three_step_model)([data["train"][0]])


# ----------------------------------------------------------------------------------------------------------------------
# Export


@pytest.mark.parametrize("model_class", [WMLMForBeamPrediction, WMLMForPowerForecast])
def test_torch_export_with_a_dynamic_batch(tiny_config, model_class):
    from wmlm.export import example_inputs

    model = model_class(tiny_config).eval()
    processor = WMLMProcessor.from_config(tiny_config)
    inputs = example_inputs(processor, batch_size=3)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (), kwargs=inputs, dynamic_shapes={k: {0: batch} for k in inputs})
    other = example_inputs(processor, batch_size=7)
    other["modality_mask"][0, 2, 1] = False  # a per-sample mask follows the same graph
    with torch.no_grad():
        expected, exported = model(**other), program.module()(**other)
    name = "logits" if model_class is WMLMForBeamPrediction else "predicted_power"
    torch.testing.assert_close(exported[name], expected[name], rtol=1e-5, atol=1e-5)


def test_onnx_runtime_matches_eager(tmp_path, tiny_config):
    import onnxruntime as ort

    from wmlm.export import example_inputs, export_onnx

    model = WMLMForBeamPrediction(tiny_config).eval()
    path = export_onnx(model, tmp_path / "wmlm.onnx")
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["logits"]
    inputs = example_inputs(WMLMProcessor.from_config(tiny_config), batch_size=5)
    inputs["modality_mask"][1, :, 1] = False
    (logits,) = session.run(None, {i.name: inputs[i.name].numpy() for i in session.get_inputs()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(**inputs).logits.numpy(), atol=1e-4, rtol=0)


def test_split_level_fit_keeps_the_base_station_frame_unless_asked(tmp_path, twin_folder, tiny_config):
    from wmlm.data import fit_normalization

    data = load_deepsense6g([twin_folder], "beam_prediction", cache_dir=str(tmp_path / "cache"),
                            split_fractions=(1.0, 0.0, 0.0), **window_kwargs(tiny_config))
    processor = WMLMProcessor.from_config(tiny_config)
    default = fit_normalization(processor, tiny_config, data["train"])
    assert default.encoder_configs["gps"] == tiny_config.encoder_configs["gps"]
    assert default.encoder_configs["beam"]["power_std_db"] > 0
    fitted = fit_normalization(processor, tiny_config, data["train"], positions=True).encoder_configs["gps"]
    positions = np.array(data["train"]["gps_position"]).reshape(-1, 2)
    np.testing.assert_allclose(fitted["position_center_m"], positions.mean(0), rtol=1e-4)
