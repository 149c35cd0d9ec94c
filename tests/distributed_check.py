"""Run under `accelerate launch` by tests/test_recipes.py: what each rank of the alignment recipe sees and computes.

    accelerate launch ... tests/distributed_check.py OUT RECIPE.yaml [--key value ...]

Writes OUT/rank<r>.json: the world size, the samples ("scenario/row") this rank's training dataloader yields in one
epoch, and the InfoNCE loss of this rank's half of a fixed global batch with negatives gathered from every rank.
Rank 0 adds the loss of the whole global batch in one process with the same weights.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments

from wmlm.align import AlignModelArguments, build_trainer
from wmlm.training import DataArguments, finish_rank, parse_arguments


def main():
    out = Path(sys.argv[1])
    arguments = parse_arguments((AlignModelArguments, DataArguments, TrainingArguments), sys.argv[2:])
    trainer, _ = build_trainer(*arguments)
    rank, world = trainer.args.process_index, trainer.args.world_size

    seen, collate = [], trainer.data_collator
    trainer.data_collator = lambda examples: seen.extend(f"{e['scenario']}/{e['row']}" for e in examples) or collate(
        examples)
    for _ in trainer.get_train_dataloader():
        pass
    train = [f"{scenario}/{row}" for scenario, row in zip(*trainer.train_dataset.select_columns(
        ["scenario", "row"]).to_dict().values(), strict=True)]
    record = {"world_size": world, "rank": rank, "seen": seen, "train": train}

    # The same global batch on every rank; each rank takes its half, as DDP would hand it out.
    global_batch = collate([trainer.train_dataset[i] for i in range(8)])
    half = slice(rank * 8 // world, (rank + 1) * 8 // world)
    local = {k: v[half] if torch.is_tensor(v) else v for k, v in global_batch.items()}
    model = trainer.accelerator.prepare(trainer.model).train()
    record["gathered_loss"] = model(**local).loss.item()
    if rank == 0:
        with torch.no_grad():
            record["single_process_loss"] = trainer.model.eval()(**global_batch).loss.item()
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    trainer.accelerator.wait_for_everyone()
    trainer.end()


if __name__ == "__main__":
    main()
    finish_rank()
