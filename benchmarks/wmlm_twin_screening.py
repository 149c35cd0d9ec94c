"""Which WMLM settings carry to a new twin site? Screened on validation passes only, for the main job.

    python -m dataset_scripts.digital_twin --output_dir /tmp/twin --num_samples 500
    python benchmarks/wmlm_twin_screening.py --data_dir /tmp/twin --variants power power_gps \
        --batch_size 16 --epochs 30

wmlm-small from scratch through `wmlm benchmark`'s Trainer (its adapt recipe, soft labels) on every site but
`--held_out` (0.9 / 0.1 of their passes), scored on those sites' validation passes and, zero-shot, on the held-out
site's validation passes (its in-scenario 0.7 / 0.1 / 0.2 split). Test passes are not scored.
"""

import json
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
from transformers import HfArgumentParser

from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from wmlm import benchmark
from wmlm.data import fit_normalization

SMALL_VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                "intermediate_size": 128}  # wmlm-small's 64 px ViT is too slow for this CPU
VARIANTS = {
    "power_gps": {"modalities": ["beam", "gps"]},
    "power": {"modalities": ["beam"]},
    "power_camera_gps": {"modalities": ["beam", "vision", "gps"], "encoder_configs": {"vision": SMALL_VISION}},
}


@dataclass
class TwinScreeningArguments:
    data_dir: list[str] = field(metadata={"help": "twin sites (or real scenarios), or a folder holding several"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": f"of {list(VARIANTS)}"})
    held_out: str = field(default="twin4", metadata={"help": "the new site"})
    batch_size: int = field(default=64, metadata={"help": "windows per step (the recipe's is 64)"})
    epochs: int = field(default=15, metadata={"help": "epochs (the recipe's are 15)"})
    output_dir: str = field(default="outputs/twin_screening", metadata={"help": "runs and the windows' cache"})


def top1(trainer, split) -> float:
    return float((trainer.predict(split).predictions.argmax(-1) == np.array(split["labels"])).mean())


def main(argv=None):
    (args,) = HfArgumentParser(TwinScreeningArguments).parse_args_into_dataclasses(argv)
    datasets.disable_progress_bars()
    bench = benchmark.BenchmarkArguments(data_dir=args.data_dir, protocol="few_shot", held_out=[args.held_out],
                                         train_fractions=[0.0, 0.1], seeds=[0], preset="wmlm-small",
                                         output_dir=args.output_dir, ensemble=1, epochs=args.epochs,
                                         wmlm_recipe_overrides=[f"per_device_train_batch_size={args.batch_size}"])
    zero_shot, few_shot = benchmark.tasks(bench, WMLMConfig.from_preset("wmlm-small", modalities=["beam"]))
    for name in args.variants:
        started = time.perf_counter()
        config = WMLMConfig.from_preset("wmlm-small", **VARIANTS[name])
        processor = WMLMProcessor.from_config(config)
        model = WMLMForBeamPrediction(fit_normalization(processor, config, zero_shot.splits["hard"]["train"]))
        trainer = benchmark.wmlm_trainer(model, processor, zero_shot, bench, "full", 0)
        trainer.train()
        print(json.dumps({"variant": name, "batch_size": args.batch_size, "epochs": args.epochs,
                          "optimizer_steps": trainer.state.global_step,
                          "source_validation_top1": round(top1(trainer, zero_shot.splits["hard"]["validation"]), 3),
                          "new_site_validation_top1": round(top1(trainer, few_shot.splits["hard"]["validation"]), 3),
                          "seconds": round(time.perf_counter() - started)}), flush=True)


if __name__ == "__main__":
    main()
