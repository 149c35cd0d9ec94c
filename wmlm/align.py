"""Stage 1: align every modality to the anchor by contrastive learning (`WMLMForContrastiveAlignment`).

    accelerate launch recipes/align.py recipes/wmlm-tiny/align/config.yaml --data_dir data/twin

Trains on the builder's `samples` split, logs the loss and the validation retrieval recall@1/@5 from the anchor to
each other modality, and saves a checkpoint (model, processor) that `from_pretrained` loads.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, set_seed

from modeling_wmlm import WMLMConfig, WMLMForContrastiveAlignment, WMLMProcessor

from .data import SampleCollator, fit_normalization
from .hub import push
from .training import (
    DataArguments,
    SaveProcessorCallback,
    finish_rank,
    load_splits,
    parse_arguments,
    resume_checkpoint,
    save_final,
    take_hub_push,
)


@dataclass
class AlignModelArguments:
    preset: str = field(default="wmlm-tiny", metadata={"help": "WMLMConfig preset"})
    modalities: list[str] = field(default_factory=lambda: ["beam", "vision", "gps"], metadata={
        "help": "modalities to encode (real DeepSense 1-5 have no frames: beam gps)"})
    anchor_modality: str = field(default="beam", metadata={"help": "beam, vision, gps or joint (all pairs)"})


class AlignmentTrainer(Trainer):
    """A Trainer whose evaluation returns the embeddings, so `compute_metrics` can score retrieval over the whole
    validation split (gathered from every rank by the Trainer) rather than within one batch. The presence mask rides
    in the labels slot: the Trainer calls `compute_metrics` only when there are labels."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            outputs = model(**inputs)
        loss = outputs.loss.detach()
        if prediction_loss_only:
            return loss, None, None
        config = self.model.config
        embeddings = torch.zeros(*outputs.modality_mask.shape, config.projection_dim, device=loss.device)
        for modality, embedding in outputs.embeddings.items():
            embeddings[:, config.modality_index[modality]] = embedding
        return loss, embeddings, outputs.modality_mask.float()


def retrieval_metrics(model: WMLMForContrastiveAlignment, ks=(1, 5)):
    """recall@k of retrieving sample i's embedding of one modality from its embedding of the other, among the
    validation samples having both, for each aligned pair (anchor -> other)."""
    modalities = model.config.modalities
    pairs = model.alignment_pairs(modalities)

    def compute(prediction) -> dict:
        embeddings, present = prediction.predictions, prediction.label_ids  # (N, M, P), (N, M)
        metrics = {}
        for anchor, other in pairs:
            a, b = modalities.index(anchor), modalities.index(other)
            rows = (present[:, a] > 0) & (present[:, b] > 0)
            similarity = embeddings[rows, a] @ embeddings[rows, b].T  # (n, n)
            rank = (similarity > np.diag(similarity)[:, None]).sum(1)  # 0: the true partner comes first
            for k in ks:
                metrics[f"recall@{k}_{anchor}_to_{other}"] = float((rank < k).mean()) if len(rank) else float("nan")
        return metrics

    return compute


def build_trainer(model_args: AlignModelArguments, data_args: DataArguments, training_args: TrainingArguments):
    data = load_splits(data_args, "samples", training_args, num_beams=alignment_config(model_args).num_beams)
    return alignment_trainer(model_args, data, training_args)


def alignment_config(model_args: AlignModelArguments) -> WMLMConfig:
    return WMLMConfig.from_preset(model_args.preset, modalities=model_args.modalities,
                                  anchor_modality=model_args.anchor_modality)


def alignment_trainer(model_args: AlignModelArguments, data, training_args: TrainingArguments):
    """-> (the trainer, the processor) on the builder's `samples` splits, normalisation fitted on training alone."""
    set_seed(training_args.seed)
    config = alignment_config(model_args)
    processor = WMLMProcessor.from_config(config)
    config = fit_normalization(processor, config, data["train"])
    model = WMLMForContrastiveAlignment(config)
    trainer = AlignmentTrainer(model=model, args=training_args, train_dataset=data["train"],
                               eval_dataset=data.get("validation"), data_collator=SampleCollator(processor),
                               compute_metrics=retrieval_metrics(model), callbacks=[SaveProcessorCallback(processor)])
    return trainer, processor


def main(argv=None):
    model_args, data_args, training_args = parse_arguments((AlignModelArguments, DataArguments, TrainingArguments),
                                                           argv)
    repo_id = take_hub_push(training_args)
    trainer, processor = build_trainer(model_args, data_args, training_args)
    trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    stage = f"stage 1: contrastive alignment, anchor {trainer.model.config.anchor_modality}"
    save_final(trainer, processor, training_args.output_dir, data_args, stage)
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if repo_id and trainer.is_world_process_zero():
        push(training_args.output_dir, repo_id, private=bool(training_args.hub_private_repo))
    trainer.end()  # a rank that exits with its gloo group alive can abort ("terminate called ...")
    return trainer


if __name__ == "__main__":
    main()
    finish_rank()
