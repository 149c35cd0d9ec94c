"""`python -m wmlm`: the main job on the embedded default data, the digital twin; about a minute on 2 CPU cores.

Writes twin scenarios in the DeepSense layout, prepares them with the DeepSense6G builder, trains a beam predictor on
the training sequences, reports top-1 accuracy on held-out sequences against always guessing the most common beam,
then saves the model and checks that `AutoModelForSequenceClassification` reloads it to the same logits.
"""

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, HfArgumentParser

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenarios
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor

from .data import WindowCollator, fit_normalization, window_kwargs


@dataclass
class MainArguments:
    output_dir: str = field(default="outputs/main", metadata={"help": "twin data, dataset cache and the model"})
    twin_presets: list[str] = field(default_factory=lambda: ["twin1", "twin3"], metadata={"help": "twin sites"})
    num_samples: int = field(default=400, metadata={"help": "samples per twin scenario"})
    model_preset: str = field(default="wmlm-tiny", metadata={"help": "WMLMConfig preset"})
    max_steps: int = field(default=400, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "windows per step"})
    learning_rate: float = field(default=1e-2, metadata={"help": "AdamW learning rate"})
    seed: int = field(default=0, metadata={"help": "seeds the twin, the split and the model"})


@torch.no_grad()
def evaluate(model, loader) -> float:
    model.eval()
    correct = total = 0
    for batch in loader:
        predicted = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
        correct += (predicted == batch["labels"]).sum().item()
        total += batch["labels"].numel()
    return correct / total


def main(argv=None):
    (args,) = HfArgumentParser(MainArguments).parse_args_into_dataclasses(argv)
    torch.manual_seed(args.seed)
    datasets.disable_progress_bars()
    out = Path(args.output_dir)
    folders = generate_scenarios(out / "twin", args.twin_presets, num_samples=args.num_samples, seed=args.seed,
                                 image_size=(160, 90))
    print(f"twin: wrote {[f.name for f in folders]} ({args.num_samples} samples each) under {out / 'twin'}")
    config = WMLMConfig.from_preset(args.model_preset)
    data = load_deepsense6g(folders, "beam_prediction", cache_dir=str(out / "cache"), split_seed=args.seed,
                            split_fractions=(0.8, 0.0, 0.2), **window_kwargs(config))
    print(f"dataset: {', '.join(f'{s} {len(d)} windows' for s, d in data.items())}")
    if set(data) != {"train", "test"}:
        raise SystemExit(f"too few sequences for a train/test split ({sorted(data)}); raise --num_samples")

    processor = WMLMProcessor.from_config(config)
    config = fit_normalization(processor, config, data["train"])
    model = WMLMForBeamPrediction(config)
    collate = WindowCollator(processor)
    train = DataLoader(data["train"], batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    test = DataLoader(data["test"], batch_size=args.batch_size, collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    step = 0
    while step < args.max_steps:
        for batch in train:
            model.train()
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 25 == 0 or step == 1:
                print(f"step {step:4d}  loss {loss.item():.3f}")
            if step == args.max_steps:
                break

    test_labels = np.array(data["test"]["labels"])  # (windows, horizon)
    majority = (test_labels == np.bincount(np.array(data["train"]["labels"]).ravel()).argmax()).mean()
    last_beam = (test_labels == np.array(data["test"]["beam_index"])[:, -1:]).mean()
    print(f"test top-1 beam accuracy {evaluate(model, test):.3f} (baselines: most common beam {majority:.3f}, "
          f"last seen beam {last_beam:.3f})")

    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    batch = {k: v for k, v in next(iter(test)).items() if k != "labels"}
    with torch.no_grad():
        difference = (reloaded(**batch).logits - model.eval()(**batch).logits).abs().max().item()
    print(f"saved {out / 'model'}; reloaded as {type(reloaded).__name__}, max |logit difference| {difference:.1e}")
    if difference > 1e-5:
        raise SystemExit("reloaded model disagrees with the saved one")


if __name__ == "__main__":
    main()
