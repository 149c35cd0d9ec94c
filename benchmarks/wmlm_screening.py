"""Quick screening of WMLM training ideas on real DeepSense validation passes, before they go into the recipes.

    python benchmarks/wmlm_screening.py --data_dir ../shared/deepsense6g/scenario2 ../shared/deepsense6g/scenario5 \
        --variants base epochs40 dropout lr3e-3
    python benchmarks/wmlm_screening.py --data_dir ../shared/deepsense6g --variants multi_site

A plain PyTorch loop (AdamW, warmup then cosine, soft labels, the epoch best on validation kept), faster than the
Trainer for screening; wmlm-small on power + GPS, the in-scenario split of `wmlm benchmark` with seed 0. `multi_site`
trains on every given scenario's training passes, then fine-tunes on each scenario (lr 3e-4, 10 epochs). Prints
validation and test top-1 (mean of the 3 steps); choices read validation only.
"""

import copy
import json
import math
import time
from dataclasses import dataclass, field

import datasets
import torch
from transformers import HfArgumentParser

from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction
from wmlm.benchmark import BenchmarkArguments, tasks, wmlm_config

# name: (config overrides, loop settings)
VARIANTS = {
    "base": ({}, {}),
    "epochs40": ({}, {"epochs": 40}),
    "dropout": ({"hidden_dropout": 0.1}, {}),
    "lr3e-3": ({}, {"learning_rate": 3e-3}),
    "multi_site": ({}, {}),
}


@dataclass
class ScreeningArguments:
    data_dir: list[str] = field(metadata={"help": "DeepSense scenario folders, or a folder holding several"})
    variants: list[str] = field(default_factory=lambda: ["base"], metadata={"help": f"of {list(VARIANTS)}"})
    output_dir: str = field(default="outputs/screening", metadata={"help": "the windows' cache"})


def tensors(split) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(split[key]) for key in ("beam_power", "gps_position", "labels"))


def top1(model, split) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(beam_power=split[0], gps_position=split[1]).logits
    return float((logits.argmax(-1) == split[2].argmax(-1)).float().mean())


def train(model, train_split, validation, epochs=15, learning_rate=1e-3, batch_size=64, seed=0) -> float:
    """-> the best validation top-1; the model keeps that epoch's weights."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = epochs * math.ceil(len(train_split[0]) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))
    generator = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(train_split[0]), generator=generator).split(batch_size):
            loss = model(beam_power=train_split[0][batch], gps_position=train_split[1][batch],
                         labels=train_split[2][batch]).loss  # future power -> soft targets
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = top1(model, validation)
        if accuracy > best:
            best, best_state = accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return best


def build(overrides: dict) -> WMLMForBeamPrediction:
    torch.manual_seed(0)
    return WMLMForBeamPrediction(WMLMConfig.from_preset("wmlm-small", modalities=["beam", "gps"], **overrides))


def main():
    (options,) = HfArgumentParser(ScreeningArguments).parse_args_into_dataclasses()
    datasets.disable_progress_bars()
    # multi_site off: the union of the per-scenario training passes is built here.
    base = BenchmarkArguments(data_dir=options.data_dir, output_dir=options.output_dir, seeds=[0], multi_site=False)
    splits = {t.scenario: {name: tensors(split) for name, split in t.data.items()}
              for t in tasks(base, wmlm_config(base))}
    for name in options.variants:
        overrides, settings = VARIANTS[name]
        if name == "multi_site":
            screen_multi_site(splits)
            continue
        for scenario, data in splits.items():
            start = time.time()
            model = build(overrides)
            validation = train(model, data["train"], data["validation"], **settings)
            print(json.dumps({"variant": name, "scenario": scenario, "validation": round(validation, 3),
                              "test": round(top1(model, data["test"]), 3), "seconds": round(time.time() - start)}))


def screen_multi_site(splits: dict):
    union = {name: tuple(torch.cat(parts) for parts in zip(*(s[name] for s in splits.values()), strict=True))
             for name in ("train", "validation")}
    model = build({})
    print(json.dumps({"variant": "multi_site", "scenario": "all", "validation": round(
        train(model, union["train"], union["validation"]), 3)}))
    state = copy.deepcopy(model.state_dict())
    for scenario, data in splits.items():
        model.load_state_dict(state)
        before = (top1(model, data["validation"]), top1(model, data["test"]))
        validation = train(model, data["train"], data["validation"], epochs=10, learning_rate=3e-4)
        print(json.dumps({"variant": "multi_site", "scenario": scenario, "validation_before_fine_tuning":
                          round(before[0], 3), "test_before_fine_tuning": round(before[1], 3),
                          "validation": round(validation, 3), "test": round(top1(model, data["test"]), 3)}))


if __name__ == "__main__":
    main()
