"""Preparation rate of the DeepSense 6G builder on the real scenarios, against reading the same files raw.

    python benchmarks/prepare_deepsense6g.py --data_dir ../shared/deepsense6g

Both numbers come from one run, so their ratio (the builder's overhead over bare file reading: CSV parsing, checks,
Arrow writing) is comparable across machines even when samples/s is not.
"""

import csv
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from dataset_scripts.deepsense6g import DeepSense6G


@dataclass
class BenchmarkArguments:
    data_dir: str = field(default="../shared/deepsense6g", metadata={"help": "folder of real scenario folders"})
    config_names: list[str] = field(default_factory=lambda: ["samples", "beam_prediction"],
                                    metadata={"help": "builder configs to time"})


def raw_read_seconds(data_dir: Path) -> tuple[float, int]:
    """Read every CSV and every file its rows point to, parsing nothing: the floor any loader pays."""
    start, rows = time.perf_counter(), 0
    for csv_path in sorted(data_dir.glob("*/*.csv")):
        with open(csv_path) as handle:
            for row in csv.DictReader(handle):
                rows += 1
                for value in row.values():
                    if value.startswith("./"):
                        (csv_path.parent / value).read_bytes()
    return time.perf_counter() - start, rows


def main():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    datasets.disable_progress_bars()
    data_dir = Path(args.data_dir)
    raw_read_seconds(data_dir)  # warm the page cache, so neither side is timed against a cold disk
    raw_seconds, rows = raw_read_seconds(data_dir)
    print(f"raw file read: {rows} samples in {raw_seconds:.2f} s = {rows / raw_seconds:,.0f} samples/s")
    print("| config | samples | examples | seconds | samples/s | time / raw read |\n|---|---|---|---|---|---|")
    for name in args.config_names:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            builder = DeepSense6G(config_name=name, scenario_paths=[str(data_dir)], cache_dir=cache)
            builder.download_and_prepare()
            seconds = time.perf_counter() - start
            examples = sum(len(split) for split in builder.as_dataset().values())
        print(f"| {name} | {rows} | {examples} | {seconds:.2f} | {rows / seconds:,.0f} | "
              f"{seconds / raw_seconds:.1f}x |")


if __name__ == "__main__":
    main()
