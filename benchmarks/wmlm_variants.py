"""Which WMLM training choices lift validation top-1 on real DeepSense data (issue 8's experiments).

    python benchmarks/wmlm_variants.py --data_dir ../shared/deepsense6g --seeds 0 --output_dir outputs/variants

Each variant is a set of `wmlm benchmark` arguments over the defaults, run on every in-scenario task (0.7 / 0.1 / 0.2
by sequence) with the same windows; prints and writes validation and test top-1 (mean of the 3 steps) per scenario.
Choices read the validation column only.
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np

from wmlm.benchmark import METHODS, BenchmarkArguments, load_task, tasks, wmlm_config

VARIANTS = {
    "gru": ("gru", {}),
    "gru_soft": ("gru", {"soft_labels": True}),
    "tiny": ("wmlm", {}),
    "tiny_soft": ("wmlm", {"soft_labels": True}),
    "small": ("wmlm", {"preset": "wmlm-small"}),
    "small_soft": ("wmlm", {"preset": "wmlm-small", "soft_labels": True}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output_dir", default="outputs/variants")
    options = parser.parse_args()
    datasets.disable_progress_bars()
    base = BenchmarkArguments(data_dir=options.data_dir, output_dir=options.output_dir)
    out = Path(options.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for scenario, train, test in tasks(base):
        for seed in options.seeds:
            data, splits = load_task(train, test, seed, base, wmlm_config(base))
            for name in options.variants:
                method, overrides = VARIANTS[name]
                args = replace(base, **overrides)
                start = time.time()
                probabilities = METHODS[method](data, splits, args, seed)
                row = {"variant": name, "scenario": scenario, "seed": seed, "seconds": round(time.time() - start)}
                for split in ("validation", "test"):
                    hits = probabilities[split].argmax(-1) == data[split]["labels"].argmax(-1)
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
