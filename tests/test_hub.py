"""Model cards, and the push -> load round trip over real HTTP against a local Hub-compatible server."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import HubServer
from huggingface_hub import ModelCard
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoProcessor

from dataset_scripts.deepsense6g import export_parquet, load_deepsense6g
from dataset_scripts.digital_twin import generate_scenarios
from wmlm import hub

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_wmlmTestTokenThatMustNeverBeLogged"
RECORD = {"method": "wmlm", "scenario": "twin1", "seed": 0, "protocol": "in_scenario", "train_fraction": 1.0, "top1":
          [0.5, 0.4, 0.3], "top3": [0.8, 0.7, 0.6], "dba": 0.75, "within_0p5db": [0.6, 0.5, 0.4]}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    generate_scenarios(root, ["twin1", "twin4"], num_samples=200, image_size=(32, 18))
    return root


@pytest.fixture(scope="module")
def server():
    server = HubServer().start()
    yield server
    server.stop()


def run(args, env, cwd):
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def adapt(recipe, twin_dir, output_dir, *extra):
    return ["-m", "wmlm.cli", "adapt", str(ROOT / "recipes/wmlm-tiny/adapt" / recipe), "--data_dir", str(twin_dir),
            "--output_dir", str(output_dir), "--num_train_epochs", "1", "--modalities", "beam", "gps", *extra]


def test_card_metadata_parses_with_the_benchmark_numbers(tmp_path):
    from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor

    config = WMLMConfig.from_preset("wmlm-tiny", modalities=["beam", "gps"])
    WMLMForBeamPrediction(config).save_pretrained(tmp_path)
    WMLMProcessor.from_config(config).save_pretrained(tmp_path)
    (tmp_path / "test_results.json").write_text(json.dumps({"test_top1": 0.41, "test_runtime": 1.0}))
    hub.render_card(str(tmp_path), "org/wmlm-tiny", [RECORD, {**RECORD, "seed": 1, "top1": [0.7, 0.6, 0.5]},
                                                     {**RECORD, "method": "gru"}]).save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")  # huggingface_hub's parser: YAML and model-index
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["top1_step1"].metric_value == 0.6 and results["top1_step3"].metric_value == 0.4  # wmlm, 2 seeds
    assert results["dba"].dataset_name == "DeepSense 6G twin1" and results["dba"].dataset_split == "test"
    for words in ("60.0 GHz", "16-element", "64 receive beams", "5 past sensing steps", "Out-of-scope",
                  "Site-specific beam indices", "CC BY-NC-SA 4.0", "top1 0.41", "| in_scenario | twin1 | 1 |"):
        assert words in card.text, words


def test_push_and_load_by_repo_id_over_http(twin, server, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_push"),
           "HF_HUB_DISABLE_XET": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HF_HUB_OFFLINE", None)
    base, lora, dataset = tmp_path / "base", tmp_path / "lora", tmp_path / "dataset"
    logs = run(adapt("config_full.yaml", twin / "twin1", base, "--model_name_or_path", "", "--push_to_hub", "true",
                     "--hub_model_id", "org/wmlm-tiny"), env, tmp_path)
    logs += run(adapt("config_lora.yaml", twin / "twin4", lora, "--model_name_or_path", "org/wmlm-tiny",
                      "--push_to_hub", "true", "--hub_model_id", "org/wmlm-tiny-twin4-lora"), env, tmp_path)
    samples = load_deepsense6g([str(twin / "twin1")], "samples", cache_dir=str(tmp_path / "cache"))
    export_parquet(samples, str(dataset))
    logs += run(["-m", "wmlm.cli", "push", "--folder", str(dataset), "--repo_id", "org/deepsense-twin1",
                 "--repo_type", "dataset"], env, tmp_path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([RECORD]))
    logs += run(["-m", "wmlm.cli", "push", "--folder", str(base), "--repo_id", "org/wmlm-tiny",
                 "--benchmark_results", str(results)], env, tmp_path)

    # What was pushed: weights, config with auto_map, modeling and processing code, processor, card, logs.
    pushed = server.repos[("model", "org/wmlm-tiny")].files
    for name in ("model.safetensors", "config.json", "modeling_wmlm.py", "configuration_wmlm.py",
                 "processing_wmlm.py", "geo.py", "processor_config.json", "README.md", "training_summary.json"):
        assert name in pushed, name
    assert any(name.startswith("runs/") for name in pushed) and not any("checkpoint-" in n for n in pushed)
    assert json.loads(pushed["config.json"])["auto_map"]["AutoModelForSequenceClassification"]
    adapter = server.repos[("model", "org/wmlm-tiny-twin4-lora")].files
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(adapter)
    assert "base_model: org/wmlm-tiny" in adapter["README.md"].decode()
    assert f"[org/wmlm-tiny]({server.url}/org/wmlm-tiny)" in adapter["README.md"].decode()  # the endpoint pushed to
    # The token authenticated every request and appears in no output, log, card or pushed file.
    assert server.authorizations and set(server.authorizations) == {f"Bearer {TOKEN}"}
    assert TOKEN not in logs
    for repo in server.repos.values():
        assert not any(TOKEN.encode() in content for content in repo.files.values())
    for path in tmp_path.rglob("*"):
        if path.is_file() and "hf_push" not in path.parts:  # the HF cache may hold the token file by design
            assert TOKEN.encode() not in path.read_bytes(), path

    # Load by repo id in a fresh process that cannot import the package: same logits, same rows.
    local = AutoModelForSequenceClassification.from_pretrained(base).eval()
    processor = AutoProcessor.from_pretrained(base)
    window = np.random.default_rng(0).uniform(0.01, 1.0, size=(2, 5, 64)).astype("float32")
    positions = np.random.default_rng(1).uniform(-50, 50, size=(2, 5, 2)).astype("float32")
    inputs = processor(beam_power=window, gps_position=positions)
    with torch.no_grad():
        expected = {"base": local(**inputs).logits,
                    "lora": PeftModel.from_pretrained(local, lora).eval()(**inputs).logits}
    torch.save({"window": window, "positions": positions, **expected}, tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import sys
        for name in ("modeling_wmlm", "wmlm", "dataset_scripts"):
            sys.modules[name] = None  # installed here; make them unimportable
        import torch, datasets
        from huggingface_hub import ModelCard
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoProcessor
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=False)
        model = AutoModelForSequenceClassification.from_pretrained("org/wmlm-tiny", trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained("org/wmlm-tiny", trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        inputs = processor(beam_power=expected["window"], gps_position=expected["positions"])
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs).logits, expected["base"])
            adapted = PeftModel.from_pretrained(model, "org/wmlm-tiny-twin4-lora").eval()
            torch.testing.assert_close(adapted(**inputs).logits, expected["lora"])
        rows = datasets.load_dataset("org/deepsense-twin1", cache_dir={str(tmp_path / "ds_cache")!r})
        print("ROWS", {{split: ds.num_rows for split, ds in rows.items()}}, rows["train"][0]["beam_power"][:3])
        card = ModelCard.load("org/wmlm-tiny")
        print("CARD", sorted((r.metric_type, r.metric_value) for r in card.data.eval_results))
    """)
    load_env = {**env, "HF_HOME": str(tmp_path / "hf_load"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    load_env.pop("PYTHONPATH", None)
    output = run(["-c", script], load_env, tmp_path)
    sizes = {split: ds.num_rows for split, ds in samples.items()}
    assert f"ROWS {sizes} {samples['train'][0]['beam_power'][:3]}" in output
    assert "CARD [('dba', 0.75), ('top1_step1', 0.5), ('top1_step2', 0.4), ('top1_step3', 0.3), ('top3', 0.7)]" \
        in output
