"""Which input normalisation fits real DeepSense data? Beam top-1 of WMLM under each, on the same windows.

    python benchmarks/normalisation.py --data_dir ../shared/deepsense6g --output_dir outputs/normalisation

Variants (the model is the same; only the encoders' reading of power and position changes):
- `old`: the former defaults, power in dB clipped at a -40 dB floor and positions / 100 m around the base station;
- `minmax`: dB stretched by each vector's own span (scale-free), positions as `old`;
- `minmax_fit`: `minmax` plus positions centred and scaled by the training split's statistics;
- `standardize_fit`: dB standardised with the training split's mean and std, positions fitted.

Protocols: `in_scenario` (per scenario, sequences split train / validation / test 0.6 / 0.1 / 0.3, so train +
validation is the usual 70 %) and `cross_scenario` (train and validate on scenarios 1-4, test on 5; validation is
a tenth of the training scenarios' sequences). Choices are read from the validation column; test is reported beside.
"""

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from dataset_scripts.deepsense6g import load_deepsense6g
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from wmlm.data import WindowCollator, fit_normalization, window_kwargs

VARIANTS = {
    "old": ({"power_transform": "log"}, False),
    "minmax": ({"power_transform": "log_minmax"}, False),
    "minmax_fit": ({"power_transform": "log_minmax"}, True),
    "standardize_fit": ({"power_transform": "log_standardize"}, True),
}
OLD_GPS = {"position_center_m": [0.0, 0.0], "position_scale_m": 100.0}


@dataclass
class NormalisationArguments:
    data_dir: str = field(default="../shared/deepsense6g", metadata={"help": "DeepSense scenario folders' parent"})
    output_dir: str = field(default="outputs/normalisation", metadata={"help": "results.json and the dataset cache"})
    presets: list[str] = field(default_factory=lambda: ["wmlm-tiny", "wmlm-small"], metadata={"help": "presets"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": "normalisations"})
    scenarios: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5], metadata={"help": "in-scenario sites"})
    in_scenario: bool = field(default=True, metadata={"help": "train and test on each of scenarios alone"})
    cross_scenario: bool = field(default=True, metadata={"help": "also train on 1-4, test on 5"})
    epochs: float = field(default=15, metadata={"help": "training epochs per run (the best on validation is kept)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate (cosine, 5% warmup)"})
    batch_size: int = field(default=64, metadata={"help": "windows per step"})
    seed: int = field(default=0, metadata={"help": "split and model seed"})


def protocols(args):
    root = Path(args.data_dir)
    if args.in_scenario:
        for s in args.scenarios:
            yield f"scenario{s}", {"scenario_paths": [str(root / f"scenario{s}")],
                                   "split_fractions": (0.6, 0.1, 0.3)}
    if args.cross_scenario:
        # Validation sequences come from the training scenarios: 10 % of each, seeded.
        yield "cross 1-4 -> 5", {"scenario_paths": [str(root / f"scenario{s}") for s in (1, 2, 3, 4)],
                                 "split_fractions": (0.9, 0.1, 0.0), "test_paths": [str(root / "scenario5")]}


def load(spec: dict, config: WMLMConfig, args) -> datasets.DatasetDict:
    cache = str(Path(args.output_dir) / "cache")
    kwargs = {"split_seed": args.seed, "cache_dir": cache, **window_kwargs(config)}
    data = load_deepsense6g(spec["scenario_paths"], "beam_prediction", split_fractions=spec["split_fractions"],
                            **kwargs)
    if "test_paths" in spec:
        data["test"] = load_deepsense6g(spec["test_paths"], "beam_prediction", split_fractions=(0.0, 0.0, 1.0),
                                        **kwargs)["test"]
    return data


def top1_metric(prediction) -> dict:
    return {"top1": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def top1(trainer: Trainer, split) -> float:
    prediction = trainer.predict(split)
    return float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())


def run(variant: str, preset: str, data, args) -> dict:
    encoder, fit = VARIANTS[variant]  # fit: centre and scale positions on the training split
    config = WMLMConfig.from_preset(preset, modalities=["beam", "gps"],
                                    encoder_configs={"beam": encoder, "gps": OLD_GPS})
    processor = WMLMProcessor.from_config(config)
    config = fit_normalization(processor, config, data["train"], positions=fit)
    set_seed(args.seed)
    model = WMLMForBeamPrediction(config)
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=256,
            num_train_epochs=args.epochs, learning_rate=args.learning_rate, lr_scheduler_type="cosine",
            warmup_steps=0.05, weight_decay=0.01, report_to=[], use_cpu=True, remove_unused_columns=False,
            disable_tqdm=True, seed=args.seed, logging_strategy="no",
            # Small presets overfit a single site within a few epochs: keep the epoch best on validation.
            eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,
            metric_for_best_model="top1",
        )
        trainer = Trainer(model=model, args=training, train_dataset=data["train"], eval_dataset=data["validation"],
                          data_collator=WindowCollator(processor), compute_metrics=top1_metric)
        trainer.train()
        return {"validation_top1": top1(trainer, data["validation"]), "test_top1": top1(trainer, data["test"])}


def main(argv=None):
    (args,) = HfArgumentParser(NormalisationArguments).parse_args_into_dataclasses(argv)
    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    results = []
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in protocols(args):
        data = load(spec, WMLMConfig.from_preset("wmlm-tiny"), args)
        for preset in args.presets:
            for variant in args.variants:
                record = {"protocol": name, "preset": preset, "variant": variant, **run(variant, preset, data, args)}
                results.append(record)
                print(json.dumps(record), flush=True)
                (out / "results.json").write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results):
    presets = sorted({r["preset"] for r in results}, key=[r["preset"] for r in results].index)
    variants = sorted({r["variant"] for r in results}, key=list(VARIANTS).index)
    print("\n| protocol | preset | " + " | ".join(f"{v} val / test" for v in variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    protocols_seen = sorted({r["protocol"] for r in results}, key=[r["protocol"] for r in results].index)
    for protocol in protocols_seen:
        for preset in presets:
            cells = []
            for variant in variants:
                key = (protocol, preset, variant)
                match = [r for r in results if (r["protocol"], r["preset"], r["variant"]) == key]
                cells.append(f"{match[0]['validation_top1']:.3f} / {match[0]['test_top1']:.3f}" if match else "")
            print(f"| {protocol} | {preset} | " + " | ".join(cells) + " |")
    for preset in presets:
        for split in ("validation_top1", "test_top1"):
            means = [np.mean([r[split] for r in results if (r["preset"], r["variant"]) == (preset, v)
                              and r["protocol"].startswith("scenario")] or [np.nan]) for v in variants]
            print(f"| in-scenario mean {split.split('_')[0]} | {preset} | "
                  + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    main()
