"""Stage 2: adapt the backbone and a task head on windows (`WMLMForBeamPrediction` / `WMLMForPowerForecast`).

    accelerate launch recipes/adapt.py recipes/wmlm-tiny/adapt/config_full.yaml --data_dir data/twin \
        --model_name_or_path outputs/wmlm-tiny/align                     # a "foundation" model on many sites
    accelerate launch recipes/adapt.py recipes/wmlm-tiny/adapt/config_lora.yaml --data_dir data/twin/twin4 \
        --model_name_or_path outputs/wmlm-tiny/adapt --train_fraction 0.1   # a LoRA adapter for a new site

`model_name_or_path` is a stage-1 checkpoint (its encoders are copied into a fresh stage-2 model), a stage-2
checkpoint (trained further; the base of `mode: lora`), or empty (from scratch, the no-alignment ablation).
"""

from dataclasses import dataclass, field

import numpy as np
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoProcessor, Trainer, TrainingArguments, set_seed

from modeling_wmlm import (
    BACKBONE_LORA_TARGET_MODULES,
    WMLMConfig,
    WMLMForBeamPrediction,
    WMLMForContrastiveAlignment,
    WMLMForPowerForecast,
    WMLMProcessor,
)

from .data import WindowCollator, fit_normalization, window_kwargs
from .hub import push
from .training import (
    DataArguments,
    SaveProcessorCallback,
    finish_rank,
    load_splits,
    parse_arguments,
    refuse_seen_held_out,
    resume_checkpoint,
    save_final,
    take_hub_push,
)

TASKS = {"beam_prediction": WMLMForBeamPrediction, "power_forecast": WMLMForPowerForecast}
HEADS = {"beam_prediction": "beam_head", "power_forecast": "power_head"}


@dataclass
class AdaptModelArguments:
    task: str = field(default="beam_prediction", metadata={"help": "beam_prediction or power_forecast"})
    mode: str = field(default="full", metadata={"help": "full (every weight) or lora (PEFT adapter on the backbone)"})
    model_name_or_path: str = field(default="", metadata={
        "help": "stage-1 or stage-2 checkpoint; empty trains from scratch (the ablation without alignment)"})
    preset: str = field(default="wmlm-tiny", metadata={"help": "WMLMConfig preset when training from scratch"})
    modalities: list[str] = field(default_factory=lambda: ["beam", "vision", "gps"], metadata={
        "help": "modalities when training from scratch; from a stage-1 checkpoint, which of its aligned encoders "
                "to use (those it has of these); a stage-2 checkpoint brings its own"})
    freeze_encoders: bool = field(default=False, metadata={"help": "train the backbone and head only"})
    soft_labels: bool = field(default=False, metadata={
        "help": "beam_prediction: train on the measured future power vectors as targets (a softmax over dB, the "
                "config's beam_soft_label_temperature_db) instead of the best beam alone, as wmlm benchmark's WMLM "
                "does; validation and test still score the best beam. power_forecast trains on the power vectors "
                "either way"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if self.mode not in ("full", "lora"):
            raise ValueError(f"mode must be full or lora, got {self.mode!r}")
        if self.mode == "lora" and not self.model_name_or_path:
            raise ValueError("mode lora adapts a trained stage-2 model: give model_name_or_path")


def initial_config(model_args: AdaptModelArguments) -> WMLMConfig:
    if not model_args.model_name_or_path:
        return WMLMConfig.from_preset(model_args.preset, modalities=model_args.modalities)
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    if config.architectures != [WMLMForContrastiveAlignment.__name__]:
        return config
    used = [m for m in config.modalities if m in model_args.modalities]
    if not used:
        raise ValueError(f"{model_args.model_name_or_path} aligned {config.modalities}, none of modalities "
                         f"{model_args.modalities}: name at least one of its modalities")
    return config.modalities_subset(used)


def initial_model(model_args: AdaptModelArguments, config: WMLMConfig, train_split):
    """-> (model, processor). From scratch, the normalisation statistics are fitted on the training split only; a
    checkpoint keeps the statistics its encoders were trained with, which its config carries."""
    model_class, path = TASKS[model_args.task], model_args.model_name_or_path
    if not path:
        processor = WMLMProcessor.from_config(config)
        return model_class(fit_normalization(processor, config, train_split)), processor
    if config.architectures == [WMLMForContrastiveAlignment.__name__]:  # the processor reads what config uses
        return model_class(config).load_alignment_encoders(path), WMLMProcessor.from_config(config)
    return model_class.from_pretrained(path), AutoProcessor.from_pretrained(path)


def prepare_model(model, model_args: AdaptModelArguments):
    if model_args.freeze_encoders:
        model.wmlm.encoders.requires_grad_(False)
    if model_args.mode == "lora":
        lora = LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                          target_modules=BACKBONE_LORA_TARGET_MODULES, modules_to_save=[HEADS[model_args.task]])
        model = get_peft_model(model, lora)
    return model


def beam_metrics(prediction) -> dict:
    """top-1 per horizon step and their mean."""
    correct = prediction.predictions.argmax(-1) == prediction.label_ids  # (N, horizon)
    metrics = {f"top1_h{h + 1}": float(c) for h, c in enumerate(correct.mean(0))}
    return {"top1": float(correct.mean()), **metrics}


def power_metrics(prediction) -> dict:
    """NMSE in dB of the forecast power vectors."""
    predicted, target = prediction.predictions, prediction.label_ids
    nmse = ((predicted - target) ** 2).sum(-1) / np.maximum((target**2).sum(-1), 1e-12)
    return {"nmse_db": float(10 * np.log10(nmse.mean()))}


def build_trainer(model_args: AdaptModelArguments, data_args: DataArguments, training_args: TrainingArguments):
    set_seed(training_args.seed)
    if model_args.model_name_or_path:
        refuse_seen_held_out(model_args.model_name_or_path, data_args)
    config = initial_config(model_args)
    data = load_splits(data_args, model_args.task, training_args, **window_kwargs(config))
    if model_args.soft_labels and model_args.task == "beam_prediction":  # the same windows, future power as labels
        data["train"] = load_splits(data_args, "power_forecast", training_args, **window_kwargs(config))["train"]
    model, processor = initial_model(model_args, config, data["train"])
    model = prepare_model(model, model_args)
    if training_args.label_names is None:  # a PeftModel's forward hides the signature the Trainer reads them from
        training_args.label_names = ["labels"]
    compute = beam_metrics if model_args.task == "beam_prediction" else power_metrics
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"],
                      eval_dataset=data.get("validation"), data_collator=WindowCollator(processor),
                      compute_metrics=compute, callbacks=[SaveProcessorCallback(processor)])
    return trainer, processor, data


def main(argv=None):
    model_args, data_args, training_args = parse_arguments((AdaptModelArguments, DataArguments, TrainingArguments),
                                                           argv)
    repo_id = take_hub_push(training_args)
    trainer = run(*build_trainer(model_args, data_args, training_args), data_args,
                  stage=f"stage 2: {model_args.mode} adaptation, {model_args.task}")
    if repo_id and trainer.is_world_process_zero():
        push(training_args.output_dir, repo_id, private=bool(training_args.hub_private_repo))
    trainer.end()  # a rank that exits with its gloo group alive can abort ("terminate called ...")
    return trainer


def run(trainer, processor, data, data_args: DataArguments, stage: str):
    """Train (resuming if asked), save the model or adapter with its processor, evaluate on validation and test."""
    trainer.train(resume_from_checkpoint=resume_checkpoint(trainer.args))
    save_final(trainer, processor, trainer.args.output_dir, data_args, stage)
    for split in ("validation", "test"):
        if split in data:
            metrics = trainer.evaluate(data[split], metric_key_prefix=split)
            trainer.log_metrics(split, metrics)
            trainer.save_metrics(split, metrics)
    return trainer


@dataclass
class MergeArguments:
    adapter: str = field(metadata={"help": "LoRA adapter folder (from `mode: lora`)"})
    output_dir: str = field(metadata={"help": "where the standalone merged checkpoint goes"})
    base_model: str = field(default="", metadata={"help": "base checkpoint; default: the adapter's base_model"})


def merge(argv=None):
    """Fold a LoRA adapter into its base (`merge_and_unload`): a standalone checkpoint with the processor."""
    (args,) = parse_arguments((MergeArguments,), argv)
    adapter_config = PeftConfig.from_pretrained(args.adapter)
    base_path = args.base_model or adapter_config.base_model_name_or_path
    (head,) = adapter_config.modules_to_save  # the task head names the task
    task = next(task for task, name in HEADS.items() if name == head)
    base = TASKS[task].from_pretrained(base_path)
    merged = PeftModel.from_pretrained(base, args.adapter).merge_and_unload()
    merged.save_pretrained(args.output_dir)
    AutoProcessor.from_pretrained(args.adapter).save_pretrained(args.output_dir)
    return merged


if __name__ == "__main__":
    main()
    finish_rank()
