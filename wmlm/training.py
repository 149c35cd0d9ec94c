"""What the stage scripts share: YAML + command-line arguments, the data arguments, splits, and resuming.

The scripts train with the transformers `Trainer`, which runs on accelerate (DDP, DeepSpeed), checkpoints,
resumes, logs to TensorBoard and evaluates; nothing here re-implements any of that.
"""

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
import yaml
from transformers import HfArgumentParser, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.deepsense6g.deepsense6g import SPLIT_RULE, discover_scenarios, scenario_name

logger = logging.getLogger(__name__)

TRAINING_SUMMARY = "training_summary.json"  # beside the final model; the model card reads it
# What decides which split a pass falls in, with the builder's SPLIT_RULE.
SPLIT_SETTINGS = ("split_mode", "split_fractions", "split_seed", "train_scenarios", "validation_scenarios",
                  "test_scenarios")


@dataclass
class DataArguments:
    data_dir: list[str] = field(default_factory=list, metadata={
        "help": "DeepSense scenario folders or .zip files, or folders holding several (real or digital-twin)"})
    split_mode: str = field(default="in_scenario", metadata={"help": "in_scenario or cross_scenario"})
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2], metadata={
        "help": "train / validation / test fractions of each scenario's sequences (in_scenario)"})
    split_seed: int = field(default=0, metadata={"help": "seed of the sequence split"})
    train_scenarios: list[str] = field(default_factory=list, metadata={"help": "cross_scenario: training scenarios"})
    validation_scenarios: list[str] = field(default_factory=list, metadata={"help": "cross_scenario: validation"})
    test_scenarios: list[str] = field(default_factory=list, metadata={"help": "cross_scenario: test scenarios"})
    train_fraction: float = field(default=1.0, metadata={
        "help": "train on this seeded fraction of the training sequences (few-shot adaptation), at least one"})
    reversed_train_windows: bool = field(default=False, metadata={
        "help": "stage 2: also train on each training pass's windows read backwards in time, as passes in the other "
                "direction (validation and test windows never are); refused in stage 1, whose samples have none"})
    faster_train_windows: list[int] = field(default_factory=list, metadata={
        "help": "stage 2: row steps k >= 2; also train on each training pass's windows of every k-th row, the same "
                "path driven k times as fast (validation and test windows never are); refused in stage 1"})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache (default: the HF cache)"})

    def __post_init__(self):
        if not self.data_dir:
            raise ValueError("data_dir is required: DeepSense scenario folders or zips (e.g. ../shared/deepsense6g), "
                             "or twin output (python -m dataset_scripts.digital_twin --output_dir data/twin)")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")


def parse_arguments(dataclass_types, argv=None):
    """`script.py config.yaml --key value ...`: the YAML's keys, then the command line's, which win.

    The YAML becomes command-line arguments in front of the user's, so HfArgumentParser checks both the same way and
    an unknown or stale key is an error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and argv[0].endswith((".yaml", ".yml")):
        with open(argv[0]) as handle:
            argv = yaml_to_argv(yaml.safe_load(handle) or {}) + argv[1:]
    return parser.parse_args_into_dataclasses(argv)


def source_sites_argv(sites, seed: int, output_dir, cache_dir) -> list[str]:
    """A stage's arguments on source sites that a new site is scored against: every pass split 0.9 / 0.1 for
    training and validation (none held back for test: the new site is the test), seeded, with its datasets cache."""
    return ["--data_dir", *map(str, sites), "--split_fractions", "0.9", "0.1", "0.0", "--split_seed", str(seed),
            "--seed", str(seed), "--output_dir", str(output_dir), "--cache_dir", str(cache_dir)]


def yaml_to_argv(values: dict) -> list[str]:
    argv = []
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *(str(v) for v in items)]
    return argv


def load_splits(data_args: DataArguments, config_name: str, training_args: TrainingArguments,
                **builder_kwargs) -> datasets.DatasetDict:
    """The builder's splits; the main process prepares them first, so ranks never race on the cache."""
    split = {"split_mode": data_args.split_mode, "split_fractions": tuple(data_args.split_fractions),
             "split_seed": data_args.split_seed, "train_scenarios": tuple(data_args.train_scenarios),
             "validation_scenarios": tuple(data_args.validation_scenarios),
             "test_scenarios": tuple(data_args.test_scenarios),
             "reversed_train_windows": data_args.reversed_train_windows,
             "faster_train_windows": tuple(data_args.faster_train_windows)}
    with training_args.main_process_first(desc=f"preparing DeepSense6G {config_name}"):
        data = load_deepsense6g(data_args.data_dir, config_name, cache_dir=data_args.cache_dir, **split,
                                **builder_kwargs)
    if "train" not in data:
        raise ValueError(f"no training sequences in {data_args.data_dir} with {split}")
    if data_args.train_fraction < 1:
        data["train"] = sequence_fraction(data["train"], data_args.train_fraction, data_args.split_seed)
    return data


def sequence_fraction(split: datasets.Dataset, fraction: float, seed: int) -> datasets.Dataset:
    """The examples of a seeded `fraction` of the split's (scenario, sequence) passes, at least one pass."""
    keys = list(zip(split["scenario"], split["seq_index"], strict=True))
    passes = sorted(set(keys))
    count = max(1, round(fraction * len(passes)))
    chosen = {passes[i] for i in np.random.default_rng(seed).choice(len(passes), count, replace=False)}
    return split.select([i for i, key in enumerate(keys) if key in chosen])


def resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint latest`: the newest checkpoint in output_dir, or a fresh start if there is none."""
    requested = training_args.resume_from_checkpoint
    if requested != "latest":
        return requested
    if not os.path.isdir(training_args.output_dir):
        return None
    return get_last_checkpoint(training_args.output_dir)


class SaveProcessorCallback(TrainerCallback):
    """Saves the processor into every checkpoint, from the main process.

    `Trainer(processing_class=processor)` would do this, but transformers 5 then assumes a ProcessorMixin has a
    tokenizer (`align_special_tokens`) and fails on a processor without one.
    """

    def __init__(self, processor):
        self.processor = processor

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            self.processor.save_pretrained(checkpoint)


def save_final(trainer, processor, output_dir: str, data_args: DataArguments, stage: str):
    """The trained model (or adapter), its processor and a training summary (which the model card reads) in
    `output_dir`; only the main process writes."""
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        with open(os.path.join(output_dir, TRAINING_SUMMARY), "w") as handle:
            json.dump(training_summary(trainer, data_args, stage), handle, indent=1)


def training_summary(trainer, data_args: DataArguments, stage: str) -> dict:
    args, state = trainer.args, trainer.state
    runtime = next((log["train_runtime"] for log in reversed(state.log_history) if "train_runtime" in log), None)
    return {
        "stage": stage,
        "datasets": dataset_names(data_args),
        "split": split_description(data_args),
        "split_settings": split_settings(data_args),
        "train_fraction": data_args.train_fraction,
        "num_parameters": trainer.model.num_parameters(),
        "trainable_parameters": trainer.model.num_parameters(only_trainable=True),
        "optimizer_steps": state.global_step,
        "epochs": args.num_train_epochs,
        "global_batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "hardware": f"{args.world_size} x {args.device.type}, torch {torch.__version__}",
        "train_runtime_s": runtime,
    }


def dataset_names(data_args: DataArguments) -> list[str]:
    return [folder.name for folder in discover_scenarios(data_args.data_dir, extract=str)]


def split_settings(data_args: DataArguments) -> dict:
    return {**{key: value for key, value in asdict(data_args).items() if key in SPLIT_SETTINGS},
            "split_rule": SPLIT_RULE}


def split_words(settings: dict) -> str:
    if settings["split_mode"] == "cross_scenario":
        return (f"cross_scenario: training on {settings['train_scenarios']}, validation on "
                f"{settings['validation_scenarios']}, test on {settings['test_scenarios']}")
    return f"in_scenario {settings['split_fractions']} by whole sequence, seed {settings['split_seed']}"


def split_description(data_args: DataArguments) -> str:
    """The training summary's words for how the data were split and augmented."""
    return (split_words(split_settings(data_args))
            + ("; training passes also read backwards in time" if data_args.reversed_train_windows else "")
            + "".join(f"; training passes also at {k}x speed" for k in data_args.faster_train_windows))


def refuse_seen_held_out(path: str, data_args: DataArguments):
    """Refuses to start from a checkpoint that may have trained on this run's validation or test passes.

    A scenario's split depends on the split settings alone (the builder's SPLIT_RULE), so a checkpoint trained on a
    scenario is safe there on the very same settings, whichever other scenarios either run loaded.
    """
    file = Path(path) / TRAINING_SUMMARY
    summary = json.loads(file.read_text()) if file.is_file() else {}
    if "split_settings" not in summary:
        logger.warning(f"{path} has no {TRAINING_SUMMARY} with split_settings (wmlm writes one beside each final "
                       f"model), so nothing shows that it never trained on this run's validation or test passes")
        return
    then, now = summary["split_settings"], split_settings(data_args)
    overlap = sorted(trained_scenarios(then, summary["datasets"]) & held_out_scenarios(now, dataset_names(data_args)))
    if overlap and then != now:
        older = ("" if then.get("split_rule") == SPLIT_RULE else
                 " Its passes were split by an older builder, which drew every scenario from one generator in turn, "
                 "so the same settings may split them another way now.")
        raise ValueError(
            f"{path} trained on passes of {overlap}: {split_words(then)} ({file}). This run holds passes of them out "
            f"for validation or test: {split_words(now)}. Some may be among the checkpoint's training passes.{older} "
            f"Train with the checkpoint's split settings, on scenarios it never trained on, or from a checkpoint "
            f"trained on this run's split")


def trained_scenarios(settings: dict, datasets_names: list[str]) -> set[str]:
    if settings["split_mode"] == "cross_scenario":
        return set(map(scenario_name, settings["train_scenarios"]))
    return set(datasets_names) if settings["split_fractions"][0] > 0 else set()


def held_out_scenarios(settings: dict, datasets_names: list[str]) -> set[str]:
    if settings["split_mode"] == "cross_scenario":
        return set(map(scenario_name, settings["validation_scenarios"] + settings["test_scenarios"]))
    return set(datasets_names) if sum(settings["split_fractions"][1:]) > 0 else set()


def take_hub_push(training_args: TrainingArguments) -> str | None:
    """`--push_to_hub --hub_model_id org/name`: the repository the final folder goes to, with its model card. The
    Trainer's own push is switched off: it would push every checkpoint and write its generic card over ours."""
    if not training_args.push_to_hub:
        return None
    training_args.push_to_hub = False
    return training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir))


def finish_rank():
    """End a launched rank (WORLD_SIZE > 1) right after its script's `main()` returned, without Python's
    finalization, as multiprocessing ends its child processes: flush the output, then `os._exit(0)`.

    A gloo worker thread can still hold a collective's tensors, or run its callbacks, when `main()` returns (DeepSpeed
    keeps its process groups alive past `destroy_process_group`). Taking the GIL from that thread while the interpreter
    finalizes aborts the rank, "terminate called without an active exception" (pytorch/pytorch#190489), so a run
    that finished and saved everything would exit non-zero. That hit about 1 ZeRO-2 run in 150 here."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
