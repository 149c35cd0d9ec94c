"""The two-stage recipes on tiny twin data: YAMLs, the stage scripts in one process, resume, LoRA and merge, and
the multi-process runs (DDP, ZeRO-2, ZeRO-3) under `accelerate launch` (marked `multiprocess`; CI runs them)."""

import glob
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoProcessor, TrainerCallback, TrainingArguments

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenarios
from modeling_wmlm import WMLMForBeamPrediction, WMLMForContrastiveAlignment
from wmlm import adapt, align, cli
from wmlm.benchmark import BenchmarkArguments
from wmlm.data import WindowCollator
from wmlm.training import DataArguments, parse_arguments, sequence_fraction

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    generate_scenarios(root, ["twin1", "twin3", "twin4"], num_samples=240, image_size=(48, 27))
    return root


def common(twin, tmp_path, *sites, steps=6):
    return ["--data_dir", *(str(twin / s) for s in sites), "--cache_dir", str(twin / "cache"), "--max_steps",
            str(steps), "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "steps",
            "--save_steps", "3", "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--report_to",
            "tensorboard", "--logging_steps", "2"]


def test_every_recipe_yaml_loads_against_its_script():
    recipes = sorted(glob.glob(str(ROOT / "recipes" / "*" / "*" / "*.yaml")))
    assert len(recipes) == 13
    for recipe in recipes:
        lines = [line for line in Path(recipe).read_text().splitlines() if line and not line.startswith("#")]
        assert all(" # " in line for line in lines), f"{recipe}: every key has a one-line comment"
        if "/benchmark/" in recipe:
            (args,) = parse_arguments((BenchmarkArguments,), [recipe])
            assert args.preset == Path(recipe).parts[-3]
            continue
        model_args = align.AlignModelArguments if "/align/" in recipe else adapt.AdaptModelArguments
        # --use_cpu: the 2.4b recipes ask for bf16, which transformers allows on a GPU-less machine only then.
        with warnings.catch_warnings():  # a deprecated key (gradient_checkpointing) would warn on every user run
            warnings.simplefilter("error", FutureWarning)
            model, data, training = parse_arguments((model_args, DataArguments, TrainingArguments),
                                                    [recipe, "--use_cpu", "true"])
        assert training.report_to == ["tensorboard"] and training.lr_scheduler_type == "cosine"
        assert Path(recipe).parts[-3] in (getattr(model, "preset", ""), *training.output_dir.split("/"))


def test_a_stale_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "config.yaml"
    recipe.write_text((ROOT / "recipes/wmlm-tiny/align/config.yaml").read_text() + "warmup_ratio: 0.1\n")
    with pytest.raises(ValueError, match="warmup_ratio"):
        parse_arguments((align.AlignModelArguments, DataArguments, TrainingArguments), [str(recipe)])


def test_command_line_overrides_the_recipe():
    recipe = str(ROOT / "recipes/wmlm-tiny/adapt/config_lora.yaml")
    model, data, training = parse_arguments((adapt.AdaptModelArguments, DataArguments, TrainingArguments),
                                            [recipe, "--train_fraction", "0.1", "--learning_rate", "0.5"])
    assert (data.train_fraction, training.learning_rate, model.mode) == (0.1, 0.5, "lora")


def test_cli_lists_its_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    usage = capsys.readouterr().err
    assert all(name in usage for name in ("align", "adapt", "merge"))


def test_train_fraction_keeps_whole_sequences(twin):
    from dataset_scripts.deepsense6g import load_deepsense6g

    train = load_deepsense6g([twin / s for s in ("twin1", "twin3", "twin4")], "beam_prediction",
                             cache_dir=str(twin / "cache"))["train"]
    keys = list(zip(train["scenario"], train["seq_index"], strict=True))
    passes = set(keys)
    assert len(passes) >= 3
    few = sequence_fraction(train, 0.5, seed=0)
    kept = set(zip(few["scenario"], few["seq_index"], strict=True))
    assert len(kept) == round(0.5 * len(passes)) and kept < passes
    assert len(few) == sum(key in kept for key in keys)  # every window of a kept pass, none of the others
    again = sequence_fraction(train, 0.5, seed=0)
    assert again["seq_index"] == few["seq_index"] and again["scenario"] == few["scenario"]  # seeded


def logits(model, batch):
    with torch.no_grad():
        return model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_align_then_full_then_lora_then_merge(twin, tmp_path):
    stage1, stage2, lora, merged = (tmp_path / name for name in ("align", "adapt", "lora", "merged"))
    align.main([str(ROOT / "recipes/wmlm-tiny/align/config.yaml"), *common(twin, tmp_path, "twin1", "twin3"),
                "--output_dir", str(stage1), "--eval_strategy", "steps", "--eval_steps", "3"])
    assert type(WMLMForContrastiveAlignment.from_pretrained(stage1)) is WMLMForContrastiveAlignment
    metrics = json.loads((stage1 / "eval_results.json").read_text())
    assert {"eval_recall@1_beam_to_gps", "eval_recall@5_beam_to_vision"} <= set(metrics)
    assert glob.glob(str(stage1 / "runs" / "*" / "events.out.tfevents.*"))  # TensorBoard

    full = adapt.main([str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"),
                       *common(twin, tmp_path, "twin1", "twin3"), "--model_name_or_path", str(stage1),
                       "--output_dir", str(stage2)])
    aligned = WMLMForContrastiveAlignment.from_pretrained(stage1).encoders.state_dict()
    assert not torch.equal(full.model.wmlm.encoders.state_dict()["encoders.beam.mlp.fc_in.weight"],
                           aligned["encoders.beam.mlp.fc_in.weight"])  # started from stage 1, then trained

    trainer = adapt.main([str(ROOT / "recipes/wmlm-tiny/adapt/config_lora.yaml"), *common(twin, tmp_path, "twin4"),
                          "--model_name_or_path", str(stage2), "--train_fraction", "0.5", "--output_dir", str(lora)])
    assert {"adapter_config.json", "adapter_model.safetensors", "processor_config.json"} <= set(os.listdir(lora))
    adapter = load_file(lora / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter) and not any("encoders" in k for k in adapter)
    processor = AutoProcessor.from_pretrained(lora)
    batch = WindowCollator(processor)([trainer.train_dataset[i] for i in range(4)])
    expected = logits(trainer.model, batch)
    reloaded = PeftModel.from_pretrained(WMLMForBeamPrediction.from_pretrained(stage2), lora)
    torch.testing.assert_close(logits(reloaded, batch), expected)
    assert not torch.allclose(logits(WMLMForBeamPrediction.from_pretrained(stage2), batch), expected)

    cli.main(["merge", "--adapter", str(lora), "--output_dir", str(merged)])
    torch.testing.assert_close(logits(WMLMForBeamPrediction.from_pretrained(merged), batch), expected,
                               rtol=1e-5, atol=1e-5)
    assert AutoProcessor.from_pretrained(merged).feature_extractor.horizon == 3


def passes(split) -> set:
    return set(zip(split["scenario"], split["seq_index"], strict=True))


def test_a_checkpoint_that_may_have_trained_on_the_held_out_passes_is_refused(twin, tmp_path, caplog):
    """A scenario's split depends on the split settings alone, so stage 2 may start from a checkpoint trained on the
    same settings, whichever scenarios each loaded, or on scenarios the checkpoint never trained on."""
    stage1 = tmp_path / "align"
    align.main([str(ROOT / "recipes/wmlm-tiny/align/config.yaml"), *common(twin, tmp_path, "twin1", "twin3", steps=1),
                "--output_dir", str(stage1)])
    both = load_deepsense6g([str(twin / "twin1"), str(twin / "twin3")], cache_dir=str(twin / "cache"))
    alone = load_deepsense6g([str(twin / "twin3")], cache_dir=str(twin / "cache"))
    for split in ("train", "validation", "test"):
        assert passes(alone[split]) == {p for p in passes(both[split]) if p[0] == "twin3"}

    recipe = [str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"), "--model_name_or_path", str(stage1)]
    for refused in ([*common(twin, tmp_path, "twin3"), "--split_seed", "1"],
                    [*common(twin, tmp_path, "twin3", "twin4"), "--split_mode", "cross_scenario", "--train_scenarios",
                     "twin4", "--validation_scenarios", "twin4", "--test_scenarios", "twin3"]):
        with pytest.raises(ValueError, match=r"trained on passes of \['twin3'\].*Some may be.*split settings"):
            adapt.main([*recipe, *refused, "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    adapt.main([*recipe, *common(twin, tmp_path, "twin3", steps=1), "--output_dir", str(tmp_path / "fewer")])

    summary = stage1 / "training_summary.json"
    written = json.loads(summary.read_text())
    del written["split_settings"]["split_rule"]  # as a builder before 1.2.0 wrote it
    summary.write_text(json.dumps(written))
    with pytest.raises(ValueError, match="split by an older builder"):
        adapt.main([*recipe, *common(twin, tmp_path, "twin1", "twin3"), "--output_dir", str(tmp_path / "older")])

    del written["split_settings"]
    summary.write_text(json.dumps(written))
    with caplog.at_level("WARNING"):
        adapt.main([*recipe, *common(twin, tmp_path, "twin3", steps=1), "--output_dir", str(tmp_path / "unknown")])
    assert "nothing shows that it never trained on this run's validation or test passes" in caplog.text


def test_augmented_train_windows_reach_the_adapt_recipe_and_its_summary(twin, tmp_path):
    """The benchmark's reversed and faster training windows are the user's too, through `wmlm adapt`, and its card
    says so."""
    recipe = [str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"), *common(twin, tmp_path, "twin1", steps=2),
              "--model_name_or_path", ""]
    plain = adapt.main([*recipe, "--output_dir", str(tmp_path / "plain")])
    both = adapt.main([*recipe, "--output_dir", str(tmp_path / "both"), "--reversed_train_windows", "true"])
    assert len(both.train_dataset) == 2 * len(plain.train_dataset)
    assert both.eval_dataset["sample_index"] == plain.eval_dataset["sample_index"]  # measured order only
    forward = {tuple(w) for w in plain.train_dataset["sample_index"]}
    assert {tuple(w[::-1]) for w in both.train_dataset["sample_index"]} >= forward
    split = json.loads((tmp_path / "both" / "training_summary.json").read_text())["split"]
    assert split.endswith("training passes also read backwards in time")
    assert "backwards" not in json.loads((tmp_path / "plain" / "training_summary.json").read_text())["split"]
    faster = adapt.main([*recipe, "--output_dir", str(tmp_path / "faster"), "--faster_train_windows", "2"])
    assert faster.eval_dataset["sample_index"] == plain.eval_dataset["sample_index"]
    added = {tuple(w) for w in faster.train_dataset["sample_index"]} - forward
    assert added and all({b - a for a, b in zip(w, w[1:], strict=False)} == {2} for w in added)
    split = json.loads((tmp_path / "faster" / "training_summary.json").read_text())["split"]
    assert split.endswith("training passes also at 2x speed")
    # Stage 1 aligns single samples, which have no direction: the option is refused there, not ignored.
    align_recipe = [str(ROOT / "recipes/wmlm-tiny/align/config.yaml"), *common(twin, tmp_path, "twin1", steps=2)]
    with pytest.raises(ValueError, match="reversed_train_windows .* 'samples' config"):
        align.main([*align_recipe, "--output_dir", str(tmp_path / "align"), "--reversed_train_windows", "true"])
    with pytest.raises(ValueError, match="faster_train_windows .* 'samples' config"):
        align.main([*align_recipe, "--output_dir", str(tmp_path / "align"), "--faster_train_windows", "2"])
    assert not (tmp_path / "align" / "model.safetensors").exists()


def test_soft_labels_train_on_the_future_power_and_validate_on_the_best_beam(twin, tmp_path):
    recipe = [str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"), *common(twin, tmp_path, "twin1", steps=2),
              "--model_name_or_path", ""]
    hard = adapt.main([*recipe, "--output_dir", str(tmp_path / "hard"), "--soft_labels", "false"])
    soft = adapt.main([*recipe, "--output_dir", str(tmp_path / "soft")])  # the recipes' default
    assert soft.train_dataset["sample_index"] == hard.train_dataset["sample_index"]
    power = np.array(soft.train_dataset["labels"])  # (windows, horizon, beams)
    assert power.shape[1:] == (3, 64)
    np.testing.assert_array_equal(power.argmax(-1), np.array(hard.train_dataset["labels"]))
    assert soft.eval_dataset["labels"] == hard.eval_dataset["labels"]  # validation scores the best beam
    power = adapt.main([*recipe, "--output_dir", str(tmp_path / "power"), "--task", "power_forecast"])
    np.testing.assert_array_equal(np.array(power.train_dataset["labels"]), np.array(soft.train_dataset["labels"]))


class StepRecorder(TrainerCallback):
    """Records the steps a run takes; with `crash_at`, dies there like a killed job (no final save, the newest
    checkpoint is the last one written)."""

    def __init__(self, crash_at=None):
        self.crash_at, self.steps = crash_at, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)
        if state.global_step == self.crash_at:
            raise KeyboardInterrupt("killed")


def test_resume_after_a_kill_reaches_the_same_weights(twin, tmp_path):
    recipe = str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml")
    args = [recipe, *common(twin, tmp_path, "twin1", steps=8), "--model_name_or_path", "", "--save_steps", "4"]
    adapt.main([*args, "--output_dir", str(tmp_path / "straight")])

    def run(*extra, recorder):
        parsed = parse_arguments((adapt.AdaptModelArguments, DataArguments, TrainingArguments), [*args, *extra])
        trainer, processor, data = adapt.build_trainer(*parsed)
        trainer.add_callback(recorder)
        adapt.run(trainer, processor, data, parsed[1], stage="stage 2")

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run("--output_dir", str(killed), "--resume_from_checkpoint", "latest", recorder=StepRecorder(crash_at=6))
    assert sorted(os.listdir(killed)) == ["checkpoint-4", "runs"]
    resumed_steps = StepRecorder()
    run("--output_dir", str(killed), "--resume_from_checkpoint", "latest", recorder=resumed_steps)
    assert resumed_steps.steps == [5, 6, 7, 8]  # continued from checkpoint-4, not from scratch
    straight, resumed = load_file(tmp_path / "straight/model.safetensors"), load_file(killed / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# Several processes


def launch(accelerate_args, script, *args, env_extra=None, cwd=ROOT):
    env = {**os.environ, **(env_extra or {})}
    result = subprocess.run([*ACCELERATE, *accelerate_args, script, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


MULTI_CPU = ["--config_file", str(ROOT / "recipes/accelerate_configs/multi_cpu.yaml")]


@pytest.mark.multiprocess
def test_two_processes_see_different_shards_and_gather_negatives(twin, tmp_path):
    launch(MULTI_CPU, str(ROOT / "tests/distributed_check.py"), str(tmp_path),
           str(ROOT / "recipes/wmlm-tiny/align/config.yaml"), *common(twin, tmp_path, "twin1", "twin3"),
           "--output_dir", str(tmp_path / "run"), "--per_device_train_batch_size", "8",
           env_extra={"ACCELERATE_USE_CPU": "1"})
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [set(r["seen"]) for r in ranks]
    assert seen[0] | seen[1] == set(ranks[0]["train"])  # together they cover the training split once
    padding = len(ranks[0]["seen"]) * 2 - len(ranks[0]["train"])  # accelerate evens the last batches out
    assert len(seen[0] & seen[1]) <= padding < 16 and len(seen[0]) < len(ranks[0]["train"])
    # InfoNCE over the negatives of both ranks equals one process's loss on the same global batch.
    assert ranks[0]["gathered_loss"] == pytest.approx(ranks[0]["single_process_loss"], rel=1e-5)
    assert ranks[1]["gathered_loss"] == pytest.approx(ranks[0]["single_process_loss"], rel=1e-5)


@pytest.mark.multiprocess
@pytest.mark.parametrize("finish_rank", [False, True])
def test_a_rank_ends_cleanly_while_a_gloo_thread_still_runs_python(finish_rank):
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(ROOT / "tests/late_gloo_work.py"), *(["--finish_rank"] if finish_rank else [])],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    aborted = "terminate called without an active exception" in result.stderr
    # Without finish_rank() the rank aborts after its work is done: the failure the stage scripts end with it for.
    assert (result.returncode, aborted) == ((0, False) if finish_rank else (1, True)), result.stderr[-2000:]


@pytest.mark.multiprocess
def test_two_process_ddp_recipes(twin, tmp_path):
    env = {"ACCELERATE_USE_CPU": "1"}
    launch(MULTI_CPU, str(ROOT / "recipes/align.py"), str(ROOT / "recipes/wmlm-tiny/align/config.yaml"),
           *common(twin, tmp_path, "twin1", "twin3"), "--output_dir", str(tmp_path / "align"), env_extra=env)
    launch(MULTI_CPU, str(ROOT / "recipes/adapt.py"), str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"),
           *common(twin, tmp_path, "twin1", "twin3"), "--model_name_or_path", str(tmp_path / "align"),
           "--output_dir", str(tmp_path / "adapt"), env_extra=env)
    state = json.loads((tmp_path / "adapt/checkpoint-6/trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert sorted(os.listdir(tmp_path / "adapt/checkpoint-6")).count("rng_state_1.pth") == 1  # two ranks ran
    WMLMForBeamPrediction.from_pretrained(tmp_path / "adapt")


@pytest.mark.multiprocess
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_on_two_cpu_processes(twin, tmp_path, stage):
    zero = ROOT / f"recipes/accelerate_configs/zero{stage}"
    launch(["--config_file", f"{zero}.yaml", "--num_processes", "2"], str(ROOT / "recipes/adapt.py"),
           str(ROOT / "recipes/wmlm-tiny/adapt/config_full.yaml"), *common(twin, tmp_path, "twin1"),
           "--model_name_or_path", "", "--output_dir", str(tmp_path / "out"), "--deepspeed", f"{zero}.json",
           "--ddp_backend", "gloo", "--use_cpu", "true")
    checkpoint = tmp_path / "out/checkpoint-6"
    assert (checkpoint / "global_step6").is_dir()  # a DeepSpeed checkpoint, so the engine really ran
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(checkpoint))
    model = WMLMForBeamPrediction.from_pretrained(tmp_path / "out")  # ZeRO-3 gathers the weights to save them
    assert all(torch.isfinite(p).all() and p.numel() for p in model.parameters())
