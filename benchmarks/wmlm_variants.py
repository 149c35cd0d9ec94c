"""Which WMLM training choices lift validation top-1 on real DeepSense data (issue 8's experiments).

    python benchmarks/wmlm_variants.py --data_dir ../shared/deepsense6g --seeds 0 --output_dir outputs/variants

Each variant is a method with `wmlm benchmark` arguments over the defaults (one member, no ensemble), from scratch or
from the multi-site model, run on every in-scenario task (0.7 / 0.1 / 0.2 by sequence) with the same windows; prints
and writes validation and test top-1 (mean of the 3 steps) per scenario. Choices read the validation column only.
"""

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
import numpy as np
from transformers import HfArgumentParser

from wmlm.benchmark import METHODS, BenchmarkArguments, tasks, wmlm_config

# name: (method, benchmark arguments, whether it starts from the multi-site model of every scenario's training passes)
VARIANTS = {
    "gru_scratch": ("gru", {}, False),
    "gru": ("gru", {}, True),
    "llm_reprogram": ("llm_reprogram", {}, False),
    "tiny_scratch": ("wmlm", {"preset": "wmlm-tiny"}, False),
    "small_scratch_hard": ("wmlm", {"soft_labels": False}, False),
    "small_scratch": ("wmlm", {}, False),
    "small": ("wmlm", {}, True),
}


@dataclass
class VariantArguments:
    data_dir: list[str] = field(metadata={"help": "DeepSense scenario folders, or a folder holding several"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "split and training seeds"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": f"of {list(VARIANTS)}"})
    output_dir: str = field(default="outputs/variants", metadata={"help": "variants.json and the data cache"})


def main():
    (options,) = HfArgumentParser(VariantArguments).parse_args_into_dataclasses()
    datasets.disable_progress_bars()
    base = BenchmarkArguments(data_dir=options.data_dir, output_dir=options.output_dir, seeds=options.seeds,
                              ensemble=1)
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for task in tasks(base, wmlm_config(base)):
        for name in options.variants:
            method, overrides, multi_site = VARIANTS[name]
            start = time.time()
            probabilities = METHODS[method](task if multi_site else replace(task, source=None),
                                            replace(base, **overrides))
            row = {"variant": name, "scenario": task.scenario, "seed": task.seed,
                   "seconds": round(time.time() - start)}
            for split in ("validation", "test"):
                hits = probabilities[split].argmax(-1) == task.data[split]["labels"].argmax(-1)
                row[split] = float(hits.mean())
            records.append(row)
            print(json.dumps(row), flush=True)
            (out / "variants.json").write_text(json.dumps(records, indent=1))
    print("| variant | validation top-1 | test top-1 |\n|---|---|---|")
    for name in options.variants:
        mine = [r for r in records if r["variant"] == name]
        print(f"| {name} | {np.mean([r['validation'] for r in mine]):.3f} | {np.mean([r['test'] for r in mine]):.3f} |")


if __name__ == "__main__":
    main()
