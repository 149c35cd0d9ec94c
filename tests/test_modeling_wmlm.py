"""Model tests on the tiny preset, in the spirit of transformers' model testers."""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_inputs
from huggingface_hub.errors import StrictDataclassError
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTimeSeriesPrediction,
    Trainer,
    TrainingArguments,
)

from modeling_wmlm import (
    BACKBONE_LORA_TARGET_MODULES,
    PRESETS,
    WMLMConfig,
    WMLMForBeamPrediction,
    WMLMForContrastiveAlignment,
    WMLMForPowerForecast,
    WMLMModel,
    WMLMProcessor,
)
from modeling_wmlm.modeling_wmlm import neighbour_smoothed_targets

STAGE2_CLASSES = [WMLMModel, WMLMForBeamPrediction, WMLMForPowerForecast]
ALL_CLASSES = [*STAGE2_CLASSES, WMLMForContrastiveAlignment]


def model_inputs(model_class, config, batch=4, seed=0):
    steps = None if model_class is WMLMForContrastiveAlignment else config.history_len
    return make_inputs(config, batch=batch, steps=steps, seed=seed)


def main_output(model_class, outputs):
    return {
        WMLMModel: lambda o: o.last_hidden_state,
        WMLMForBeamPrediction: lambda o: o.logits,
        WMLMForPowerForecast: lambda o: o.predicted_power,
        WMLMForContrastiveAlignment: lambda o: torch.stack(list(o.embeddings.values())),
    }[model_class](outputs)


def test_config_roundtrip_and_defaults(tmp_path, tiny_config):
    assert (tiny_config.num_beams, tiny_config.num_antennas, tiny_config.carrier_frequency_ghz) == (64, 16, 60.0)
    assert (tiny_config.history_len, tiny_config.horizon, tiny_config.anchor_modality) == (5, 3, "beam")
    tiny_config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, WMLMConfig)
    assert reloaded.to_diff_dict() == tiny_config.to_diff_dict()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_beams": 0}, "num_beams must be positive"),
        ({"carrier_frequency_ghz": -1.0}, "carrier_frequency_ghz"),
        ({"modalities": ["beam", "lidar"]}, "no encoder yet"),
        ({"modalities": ["beam", "sonar"]}, "modalities must be distinct names"),
        ({"modalities": ["beam", "gps"], "anchor_modality": "vision"}, "not among modalities"),
        ({"anchor_modality": "wifi"}, "anchor_modality must be one of"),
        ({"hidden_size": 33}, "not a multiple of num_attention_heads"),
        ({"encoder_configs": {"vision": {"image_size": 30}}}, "not a multiple of patch_size"),
        ({"encoder_configs": {"beam": {"power_transform": "sqrt"}}}, "power_transform"),
        ({"encoder_configs": {"beam": {"hiden_size": 8}}}, "unknown keys"),
        ({"beam_label_smoothing": 1.5}, "beam_label_smoothing"),
    ],
)
def test_config_validation_errors(kwargs, message):
    # transformers' @strict configs wrap validator errors; the message is ours either way.
    with pytest.raises((ValueError, StrictDataclassError), match=message):
        WMLMConfig.from_preset("wmlm-tiny", **kwargs)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="wmlm-tiny"):
        WMLMConfig.from_preset("wmlm-huge")


@pytest.mark.parametrize(
    "name, bad, message",
    [
        ("beam_power", torch.rand(2, 5, 32), "beam_power has 32 beams"),
        ("pixel_values", torch.rand(2, 5, 3, 16, 16), "pixel_values must end in"),
        ("gps_position", torch.rand(2, 5, 3), "gps_position must end in 2 values"),
        ("beam_power", torch.rand(2, 64), "batch dimension"),
    ],
)
def test_input_validation_errors(tiny_config, name, bad, message):
    model = WMLMForBeamPrediction(tiny_config)
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    inputs[name] = bad
    with pytest.raises(ValueError, match=message):
        model(**inputs)


def test_inputs_must_match_configured_modalities():
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    model = WMLMModel(config)
    with pytest.raises(ValueError, match="'vision' is not in config.modalities"):
        model(**make_inputs(WMLMConfig.from_preset("wmlm-tiny"), batch=2, steps=5))
    with pytest.raises(ValueError, match="no modality given"):
        model()
    with pytest.raises(ValueError, match="history_len"):
        model(**make_inputs(config, batch=2, steps=6))


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_save_load_roundtrip_is_exact(tmp_path, tiny_config, model_class):
    model = model_class(tiny_config).eval()
    inputs = model_inputs(model_class, tiny_config)
    model.save_pretrained(tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert {"configuration_wmlm.py", "modeling_wmlm.py"} <= set(files)  # exported for trust_remote_code
    reloaded = model_class.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(main_output(model_class, reloaded(**inputs)),
                                   main_output(model_class, model(**inputs)), rtol=0, atol=0)


@pytest.mark.parametrize(
    "auto_class, model_class",
    [
        (AutoModel, WMLMModel),
        (AutoModelForPreTraining, WMLMForContrastiveAlignment),
        (AutoModelForSequenceClassification, WMLMForBeamPrediction),
        (AutoModelForTimeSeriesPrediction, WMLMForPowerForecast),
    ],
)
def test_auto_classes_load_every_head_from_any_checkpoint(tmp_path, tiny_config, auto_class, model_class):
    WMLMForBeamPrediction(tiny_config).save_pretrained(tmp_path)
    assert type(auto_class.from_pretrained(tmp_path)) is model_class
    assert type(auto_class.from_config(tiny_config)) is model_class


def test_trust_remote_code_without_the_package(tmp_path, tiny_config):
    """A fresh interpreter that cannot import modeling_wmlm still loads a saved folder through its exported code."""
    checkpoint = tmp_path / "checkpoint"
    model = WMLMForBeamPrediction(tiny_config).eval()
    model.save_pretrained(checkpoint)
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model(**inputs).logits
    script = textwrap.dedent(f"""
        import sys
        sys.modules["modeling_wmlm"] = None  # the package is pip-installed here; make it unimportable
        try:
            import modeling_wmlm
        except ImportError:
            pass
        else:
            raise SystemExit("modeling_wmlm should not be importable")
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
        assert type(model).__name__ == "WMLMForBeamPrediction", type(model)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        base = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
        assert type(base).__name__ == "WMLMModel"
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            torch.save(model.eval()(**inputs).logits, {str(tmp_path / "logits.pt")!r})
    """)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected)


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_sdpa_matches_eager(tiny_config, model_class, tmp_path):
    model_class(tiny_config).save_pretrained(tmp_path)
    sdpa = model_class.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    eager = model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    inputs = model_inputs(model_class, tiny_config)
    with torch.no_grad():
        torch.testing.assert_close(main_output(model_class, sdpa(**inputs)),
                                   main_output(model_class, eager(**inputs)), rtol=1e-5, atol=1e-5)


def test_eager_attention_is_causal(tiny_config):
    """Changing the last history step must not change the first tokens' hidden states."""
    model = WMLMModel(tiny_config).eval()
    model.set_attn_implementation("eager")
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["beam_power"][:, -1] = torch.rand_like(changed["beam_power"][:, -1])
    num_modalities = len(tiny_config.modalities)
    with torch.no_grad():
        a, b = model(**inputs).last_hidden_state, model(**changed).last_hidden_state
    torch.testing.assert_close(a[:, : 4 * num_modalities], b[:, : 4 * num_modalities])
    assert not torch.allclose(a[:, -1], b[:, -1])


@pytest.mark.parametrize("model_class", [WMLMForBeamPrediction, WMLMForContrastiveAlignment])
def test_gradient_checkpointing_gives_same_loss_and_grads(tiny_config, model_class):
    torch.manual_seed(0)
    model = model_class(tiny_config).train()
    inputs = model_inputs(model_class, tiny_config)
    if model_class is WMLMForBeamPrediction:
        inputs["labels"] = torch.randint(0, 64, (4, 3))
    else:
        inputs["return_loss"] = True

    def loss_and_grads():
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    first_layer = (model.wmlm.layers if hasattr(model, "wmlm") else model.encoders.encoders["vision"].layers)[0]
    assert first_layer.gradient_checkpointing
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    torch.testing.assert_close(checkpointed_loss, loss)
    assert grads.keys() == checkpointed_grads.keys()
    for name in grads:
        torch.testing.assert_close(checkpointed_grads[name], grads[name], msg=name)


def test_missing_modalities_per_sample(tiny_config):
    """A masked reading never reaches its encoder: NaN placeholders change nothing and other samples are untouched."""
    model = WMLMForBeamPrediction(tiny_config).eval()
    inputs = make_inputs(tiny_config, batch=3, steps=5)
    vision = tiny_config.modality_index["vision"]
    mask = torch.ones(3, 5, len(tiny_config.modalities), dtype=torch.bool)
    mask[0, :, vision] = False  # sample 0 comes from a site with no camera
    mask[1, 2, vision] = False  # sample 1 lost one frame
    with torch.no_grad():
        full = model(**inputs).logits
        masked = model(**inputs, modality_mask=mask).logits
        poisoned = {**inputs, "pixel_values": inputs["pixel_values"].clone()}
        poisoned["pixel_values"][~mask[..., vision]] = float("nan")
        masked_nan = model(**poisoned, modality_mask=mask).logits
    torch.testing.assert_close(masked_nan, masked)
    torch.testing.assert_close(masked[2], full[2])  # sample 2 has everything
    assert not torch.allclose(masked[0], full[0]) and not torch.allclose(masked[1], full[1])

    # Masking a modality for the whole batch is the same as not passing it.
    mask_all = torch.ones_like(mask)
    mask_all[..., vision] = False
    without_vision = {k: v for k, v in inputs.items() if k != "pixel_values"}
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, modality_mask=mask_all).logits, model(**without_vision).logits)

    # Training through NaN placeholders keeps every gradient finite.
    model.train()
    loss = model(**poisoned, modality_mask=mask, labels=torch.zeros(3, 3, dtype=torch.long)).loss
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_contrastive_pairs_follow_anchor_and_presence(tiny_config):
    inputs = make_inputs(tiny_config, batch=6)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[:2, tiny_config.modality_index["vision"]] = False
    outputs = WMLMForContrastiveAlignment(tiny_config)(**inputs, modality_mask=mask, return_loss=True)
    assert set(outputs.logits_per_pair) == {"beam-vision", "beam-gps"}
    assert outputs.logits_per_pair["beam-vision"].shape == (4, 4)
    assert outputs.logits_per_pair["beam-gps"].shape == (6, 6)
    torch.testing.assert_close(outputs.embeddings["beam"].norm(dim=-1), torch.ones(6))
    assert (outputs.embeddings["vision"][:2] == 0).all()

    joint = WMLMForContrastiveAlignment(WMLMConfig.from_preset("wmlm-tiny", anchor_modality="joint"))
    assert set(joint(**inputs).logits_per_pair) == {"beam-vision", "beam-gps", "vision-gps"}
    vision_anchor = WMLMForContrastiveAlignment(WMLMConfig.from_preset("wmlm-tiny", anchor_modality="vision"))
    assert set(vision_anchor(**inputs).logits_per_pair) == {"vision-beam", "vision-gps"}
    with pytest.raises(ValueError, match="no sample has both modalities"):
        vision_anchor(beam_power=inputs["beam_power"], gps_position=inputs["gps_position"], return_loss=True)


def test_contrastive_loss_is_symmetric_infonce(tiny_config):
    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    model = WMLMForContrastiveAlignment(config)
    outputs = model(**make_inputs(config, batch=5), return_loss=True)
    logits = outputs.logits_per_pair["beam-gps"]
    targets = torch.arange(5)
    expected = (torch.nn.functional.cross_entropy(logits, targets)
                + torch.nn.functional.cross_entropy(logits.t(), targets)) / 2
    torch.testing.assert_close(outputs.loss, expected)
    assert model.logit_scale.requires_grad
    torch.testing.assert_close(outputs.logit_scale, torch.tensor(config.logit_scale_init_value).exp())


def overfit(model, inputs, steps=60, lr=1e-3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_alignment_overfits_a_tiny_batch(tiny_config):
    torch.manual_seed(0)
    inputs = {**make_inputs(tiny_config, batch=8), "return_loss": True}
    losses = overfit(WMLMForContrastiveAlignment(tiny_config), inputs)
    assert losses[-1] < 0.25 * losses[0], losses[::10]


def test_beam_prediction_overfits_a_tiny_batch(tiny_config):
    torch.manual_seed(0)
    inputs = {**make_inputs(tiny_config, batch=8, steps=5), "labels": torch.randint(0, 64, (8, 3))}
    losses = overfit(WMLMForBeamPrediction(tiny_config), inputs, lr=3e-3)
    assert losses[-1] < 0.25 * losses[0], losses[::10]


def test_power_forecast_overfits_and_is_scale_invariant(tiny_config):
    torch.manual_seed(0)
    inputs = make_inputs(tiny_config, batch=8, steps=5)
    inputs["labels"] = torch.rand(8, 3, 64)
    model = WMLMForPowerForecast(tiny_config)
    losses = overfit(model, inputs)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    model.eval()
    scaled = {**inputs, "beam_power": 1e-6 * inputs["beam_power"], "labels": 1e-6 * inputs["labels"]}
    with torch.no_grad():
        a, b = model(**inputs), model(**scaled)
    torch.testing.assert_close(b.loss, a.loss)
    torch.testing.assert_close(b.predicted_power, 1e-6 * a.predicted_power)


def test_neighbour_label_smoothing():
    targets = neighbour_smoothed_targets(torch.tensor([0, 10]), num_beams=64, smoothing=0.2, window=2)
    torch.testing.assert_close(targets.sum(-1), torch.ones(2))
    assert targets[1, 10] == pytest.approx(0.8) and targets[1, 8] == pytest.approx(0.05)
    assert targets[1, 12] == pytest.approx(0.05) and targets[1, 13] == 0
    assert targets[0, 1] == pytest.approx(0.1)  # the edge beam shares the mass with the neighbours it has
    config = WMLMConfig.from_preset("wmlm-tiny", beam_label_smoothing=0.2, beam_smoothing_window=2)
    model = WMLMForBeamPrediction(config).eval()
    inputs = {**make_inputs(config, batch=2, steps=5), "labels": torch.tensor([[0, 10, -100], [63, 5, 6]])}
    with torch.no_grad():
        outputs = model(**inputs)
    keep = inputs["labels"] != -100
    soft = neighbour_smoothed_targets(inputs["labels"][keep], 64, 0.2, 2)
    expected = -(soft * outputs.logits[keep].log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(outputs.loss, expected)


def test_stage2_loads_stage1_encoders(tmp_path, tiny_config):
    stage1 = WMLMForContrastiveAlignment(tiny_config)
    # Move away from the initialisation.
    overfit(stage1, {**make_inputs(tiny_config, batch=8), "return_loss": True}, steps=3)
    stage1.save_pretrained(tmp_path / "stage1")
    stage2 = WMLMForBeamPrediction(tiny_config).load_alignment_encoders(str(tmp_path / "stage1"))
    for name, tensor in stage1.encoders.state_dict().items():
        torch.testing.assert_close(stage2.wmlm.encoders.state_dict()[name], tensor, msg=name)
    other = WMLMForBeamPrediction(WMLMConfig.from_preset("wmlm-tiny", projection_dim=8))
    with pytest.raises(ValueError, match="projection_dim"):
        other.load_alignment_encoders(stage1)
    # A stage-2 model on a subset of the aligned modalities (no camera at the site) takes their encoders alone.
    radio = WMLMForBeamPrediction(tiny_config.modalities_subset(["gps", "beam"]))
    assert radio.config.modalities == ["beam", "gps"] and "vision" not in radio.config.encoder_configs
    radio.load_alignment_encoders(stage1)
    for name, tensor in radio.wmlm.encoders.state_dict().items():
        torch.testing.assert_close(tensor, stage1.encoders.state_dict()[name], msg=name)
    with pytest.raises(ValueError, match=r"aligned \['beam', 'gps'\], not \['vision'\]"):
        stage2.load_alignment_encoders(WMLMForContrastiveAlignment(tiny_config.modalities_subset(["beam", "gps"])))
    with pytest.raises(ValueError, match=r"modalities \['lidar'\] are not among"):
        tiny_config.modalities_subset(["beam", "lidar"])


def test_dtype_argument(tmp_path, tiny_config):
    WMLMForBeamPrediction(tiny_config).save_pretrained(tmp_path)
    model = WMLMForBeamPrediction.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        logits = model(**make_inputs(tiny_config, batch=2, steps=5)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_lora_targets_backbone_projections(tiny_config):
    model = WMLMForBeamPrediction(tiny_config)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"],
                                            modules_to_save=["beam_head"]))
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("layers.0.self_attn.q_proj.lora_A" in n for n in trainable)
    assert any("layers.1.mlp.down_proj.lora_B" in n for n in trainable)
    assert not any("base_layer" in n for n in trainable)
    outputs = lora(**make_inputs(tiny_config, batch=2, steps=5), labels=torch.zeros(2, 3, dtype=torch.long))
    outputs.loss.backward()


def preset_parameter_count(name):
    with torch.device("meta"):
        return WMLMForBeamPrediction(WMLMConfig.from_preset(name)).num_parameters()


def test_preset_parameter_counts_on_meta_device():
    counts = {name: preset_parameter_count(name) for name in PRESETS}
    assert counts["wmlm-tiny"] < counts["wmlm-small"] < counts["wmlm-base"] < counts["wmlm-2.4b"]
    assert counts["wmlm-tiny"] < 100_000
    assert 2.3e9 <= counts["wmlm-2.4b"] <= 2.5e9, counts
    print(json.dumps(counts))


# ----------------------------------------------------------------------------------------------------------------------
# The behaviour every transformers model has (checked against ModelTesterMixin's expectations)


@pytest.mark.parametrize("model_class", STAGE2_CLASSES)
def test_hidden_states_from_argument_and_config(tiny_config, model_class):
    inputs = model_inputs(model_class, tiny_config)
    model = model_class(tiny_config).eval()
    with torch.no_grad():
        assert model(**inputs).hidden_states is None
        from_argument = model(**inputs, output_hidden_states=True).hidden_states
    assert len(from_argument) == tiny_config.num_hidden_layers + 1
    tokens = tiny_config.history_len * len(tiny_config.modalities) + tiny_config.horizon
    assert from_argument[0].shape == (4, tokens, tiny_config.hidden_size)
    config = WMLMConfig.from_preset("wmlm-tiny", output_hidden_states=True)
    with torch.no_grad():
        from_config = model_class(config).eval()(**inputs).hidden_states
    assert len(from_config) == config.num_hidden_layers + 1


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_return_dict_false_gives_a_tuple(tiny_config, model_class):
    inputs = model_inputs(model_class, tiny_config)
    model = model_class(tiny_config).eval()
    with torch.no_grad():
        as_dict = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        from_config = model_class(WMLMConfig.from_preset("wmlm-tiny", return_dict=False)).eval()(**inputs)
    assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.to_tuple()[0])


@pytest.mark.parametrize("model_class", STAGE2_CLASSES)
def test_output_attentions_on_eager_and_a_clear_error_otherwise(tiny_config, model_class):
    inputs = model_inputs(model_class, tiny_config)
    model = model_class(tiny_config).eval()
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        model(**inputs, output_attentions=True)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    tokens = tiny_config.history_len * len(tiny_config.modalities) + tiny_config.horizon
    assert len(attentions) == tiny_config.num_hidden_layers
    assert attentions[0].shape == (4, tiny_config.num_attention_heads, tokens, tokens)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(4, tiny_config.num_attention_heads, tokens))
    assert (attentions[0].triu(1) == 0).all()  # causal


@pytest.mark.parametrize("model_class", ALL_CLASSES)
def test_forward_signature_spells_out_every_input(model_class):
    parameters = inspect.signature(model_class.forward).parameters
    assert list(parameters)[1:5] == ["beam_power", "pixel_values", "gps_position", "modality_mask"]
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert model_class.main_input_name == "beam_power"
    if model_class in (WMLMForBeamPrediction, WMLMForPowerForecast):
        assert "labels" in parameters


def test_misspelled_input_is_an_error_and_trainer_keeps_the_inputs(tmp_path, tiny_config):
    model = WMLMForBeamPrediction(tiny_config)
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    with pytest.raises(TypeError, match="gps_positon"):
        model(beam_power=inputs["beam_power"], gps_positon=inputs["gps_position"])
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    trainer._set_signature_columns_if_needed()
    assert {"beam_power", "pixel_values", "gps_position", "modality_mask", "labels"} <= set(
        trainer._signature_columns)


def test_alignment_infers_on_one_sample_and_returns_encoder_states(tiny_config):
    model = WMLMForContrastiveAlignment(tiny_config).eval()
    one = make_inputs(tiny_config, batch=1)
    with torch.no_grad():
        outputs = model(**one, output_hidden_states=True)
    assert outputs.loss is None and outputs.embeddings["beam"].shape == (1, tiny_config.projection_dim)
    assert set(outputs.hidden_states) == {"beam", "vision", "gps"}
    vision = tiny_config.encoder_configs["vision"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    assert len(outputs.hidden_states["vision"]) == vision["num_layers"] + 1
    assert outputs.hidden_states["vision"][-1].shape == (1, patches + 1, vision["hidden_size"])
    assert len(outputs.hidden_states["beam"]) == tiny_config.encoder_configs["beam"]["num_layers"] + 1
    assert model(**one, return_loss=True).loss == 0  # one sample has no negative: nothing to learn, no error


def test_num_labels_is_the_codebook(tmp_path, tiny_config):
    assert tiny_config.num_labels == tiny_config.num_beams == 64
    WMLMForBeamPrediction(tiny_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=42 but WMLM predicts one of num_beams=64"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=42)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=64).config.num_labels == 64
    assert WMLMConfig.from_preset("wmlm-tiny", num_beams=32).num_labels == 32


# ----------------------------------------------------------------------------------------------------------------------
# Inputs are checked, not trusted


def bad_input_cases(config):
    def with_value(name, fill):
        def change(inputs):
            inputs[name] = inputs[name].clone()
            inputs[name][0, 1, ...] = fill
        return change

    def replace(name, make):
        def change(inputs):
            inputs[name] = make(inputs[name])
        return change

    return [
        (with_value("beam_power", float("nan")), ValueError, "modality_mask"),
        (with_value("gps_position", float("inf")), ValueError, "NaN or inf"),
        (with_value("beam_power", -3.0), ValueError, "linear received power"),
        (replace("pixel_values", lambda x: ((x + 1) * 127.5).to(torch.uint8)), ValueError, "dtype torch.uint8"),
        (replace("pixel_values", lambda x: (x + 1) * 127.5), ValueError, r"scaled to \[-1, 1\]"),
        (replace("beam_power", lambda x: x.numpy()), TypeError, "WMLMProcessor"),
        (replace("gps_position", lambda x: x.tolist()), TypeError, "must be a torch.Tensor"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_inputs_get_a_clear_error(tiny_config, case):
    change, error, message = bad_input_cases(tiny_config)[case]
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    change(inputs)
    with pytest.raises(error, match=message):
        WMLMForBeamPrediction(tiny_config)(**inputs)


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([[0, 1, 64], [0, 1, 2]]), r"0-based integer beam indices in \[0, 64\)"),
        (torch.tensor([[-1, 1, 2], [0, 1, 2]]), "0-based"),
        (torch.zeros(2, 4, dtype=torch.long), r"shape \(2, 3\)"),
        (torch.zeros(2, dtype=torch.long), r"shape \(2, 3\)"),
        (torch.zeros(2, 3), "integer"),
    ],
)
def test_bad_beam_labels_get_a_clear_error(tiny_config, labels, message):
    with pytest.raises(ValueError, match=message):
        WMLMForBeamPrediction(tiny_config)(**make_inputs(tiny_config, batch=2, steps=5), labels=labels)


def test_bad_power_labels_get_a_clear_error(tiny_config):
    model = WMLMForPowerForecast(tiny_config)
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 64\)"):
        model(**inputs, labels=torch.rand(2, 4, 64))
    with pytest.raises(ValueError, match="non-negative linear power"):
        model(**inputs, labels=-torch.rand(2, 3, 64))


# ----------------------------------------------------------------------------------------------------------------------
# Normalisation and LoRA targets


def beam_features(config, power):
    return WMLMForBeamPrediction(config).wmlm.encoders.encoders["beam"].normalise(power)


def test_minmax_power_transform_is_scale_free_and_spans_the_unit_interval():
    config = WMLMConfig.from_preset("wmlm-tiny")
    assert config.encoder_configs["beam"]["power_transform"] == "log_minmax"
    decibels = torch.tensor([[0.0, -3.0, -6.0, -1.5] + [-6.0] * 60])
    features = beam_features(config, 10 ** (decibels / 10))
    torch.testing.assert_close(features[0, :4], torch.tensor([1.0, 0.5, 0.0, 0.75]))
    torch.testing.assert_close(beam_features(config, 1e-7 * 10 ** (decibels / 10)), features)
    old = WMLMConfig.from_preset("wmlm-tiny", encoder_configs={"beam": {"power_transform": "log"}})
    assert beam_features(old, 10 ** (decibels / 10)).min() == pytest.approx(0.85)  # why the floor was replaced


def test_fitted_normalisation_statistics(tiny_config):
    processor = WMLMProcessor.from_config(tiny_config)
    decibels = torch.tensor([[0.0] * 32 + [-4.0] * 32, [0.0] * 16 + [-2.0] * 48])
    positions = torch.tensor([[10.0, 0.0], [30.0, 0.0], [float("nan"), float("nan")]])
    config = WMLMConfig.from_preset("wmlm-tiny", encoder_configs={"beam": {"power_transform": "log_standardize"}})
    with pytest.raises(ValueError, match="fit_normalization"):
        beam_features(config, torch.rand(2, 64))
    fitted = processor.fit_normalization(config, beam_power=(10 ** (decibels / 10)).numpy(),
                                         gps_position=positions.numpy())
    beam, gps = fitted.encoder_configs["beam"], fitted.encoder_configs["gps"]
    assert beam["power_mean_db"] == pytest.approx(decibels.mean().item(), abs=1e-5)
    assert beam["power_std_db"] == pytest.approx(decibels.std(unbiased=False).item(), abs=1e-5)
    assert gps["position_center_m"] == pytest.approx([20.0, 0.0]) and gps["position_scale_m"] == pytest.approx(10.0)
    assert config.encoder_configs["gps"]["position_scale_m"] == 100.0  # the input config is left alone
    standardised = beam_features(fitted, 10 ** (decibels / 10))
    assert standardised.mean().item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises((ValueError, StrictDataclassError), match="power_std_db must be positive"):
        WMLMConfig.from_preset("wmlm-tiny", encoder_configs={"beam": {"power_std_db": 0.0}})


def test_backbone_lora_targets_leave_the_encoders_alone(tiny_config):
    lora = get_peft_model(WMLMForBeamPrediction(tiny_config),
                          LoraConfig(r=4, target_modules=BACKBONE_LORA_TARGET_MODULES, modules_to_save=["beam_head"]))
    adapted = {n.split(".lora_A")[0] for n, _ in lora.named_parameters() if ".lora_A" in n}
    per_layer = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj"]
    expected = {f"base_model.model.wmlm.layers.{i}.{m}" for i in range(tiny_config.num_hidden_layers)
                for m in per_layer}
    assert adapted == expected
    assert not any("encoders" in n for n, p in lora.named_parameters() if p.requires_grad)
    # The llama-style name list also matches the vision encoder's attention, which is why the regex exists.
    names = LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    llama_style = get_peft_model(WMLMForBeamPrediction(tiny_config), names)
    assert any("encoders.vision" in n for n, _ in llama_style.named_parameters() if ".lora_A" in n)


def test_soft_targets_from_the_measured_future_power(tiny_config):
    from modeling_wmlm.modeling_wmlm import power_soft_targets

    decibels = torch.full((64,), -10.0)
    decibels[[7, 8]] = torch.tensor([0.0, -0.3])  # the runner-up is 0.3 dB down
    targets = power_soft_targets(10 ** (decibels / 10), temperature_db=0.3)
    assert targets[7] / targets[8] == pytest.approx(torch.e, rel=1e-4)  # exp(0.3 dB / 0.3 dB)
    assert targets[:7].sum() < 1e-12 and targets.sum() == pytest.approx(1.0)

    model = WMLMForBeamPrediction(tiny_config).eval()
    inputs = make_inputs(tiny_config, batch=2, steps=5)
    power = torch.rand(2, 3, 64)
    with torch.no_grad():
        outputs = model(**inputs, labels=power)
    soft = power_soft_targets(power, tiny_config.beam_soft_label_temperature_db)
    expected = -(soft * outputs.logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(outputs.loss, expected)
    with pytest.raises(ValueError, match="measured future power"):
        model(**inputs, labels=-power)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 64\)"):
        model(**inputs, labels=torch.rand(2, 4, 64))
