"""Preparation rate of the DeepSense 6G builder on real scenarios and on the digital twin, against reading the same
files raw.

    python benchmarks/prepare_deepsense6g.py --data_dir ../shared/deepsense6g --twin_samples 500

Both numbers come from one run, so their ratio (the builder's overhead over bare file reading: CSV parsing, checks,
Arrow writing) is comparable across machines even when samples/s is not. `--twin_samples N` also writes the twin's
four sites (camera frames included) into a temporary folder and times them the same way.
"""

import csv
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from dataset_scripts.deepsense6g import DeepSense6G
from dataset_scripts.digital_twin import generate_scenarios


@dataclass
class BenchmarkArguments:
    data_dir: list[str] = field(default_factory=lambda: ["../shared/deepsense6g"], metadata={
        "help": "folders of scenario folders"})
    twin_samples: int = field(default=0, metadata={"help": "also time the twin's four sites of this many samples"})
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


def time_folder(data_dir: Path, config_names: list[str], label: str):
    raw_read_seconds(data_dir)  # warm the page cache, so neither side is timed against a cold disk
    raw_seconds, rows = raw_read_seconds(data_dir)
    for name in config_names:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            builder = DeepSense6G(config_name=name, scenario_paths=[str(data_dir)], cache_dir=cache)
            builder.download_and_prepare()
            seconds = time.perf_counter() - start
            examples = sum(len(split) for split in builder.as_dataset().values())
        print(f"| {label} | {name} | {rows} | {examples} | {seconds:.2f} | {rows / seconds:,.0f} | "
              f"{rows / raw_seconds:,.0f} | {seconds / raw_seconds:.1f}x |", flush=True)


def main():
    (args,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses()
    datasets.disable_progress_bars()
    print("| data | config | samples | examples | seconds | samples/s | raw read samples/s | time / raw read |\n"
          "|---|---|---|---|---|---|---|---|")
    for data_dir in args.data_dir:
        time_folder(Path(data_dir), args.config_names, data_dir)
    if args.twin_samples:
        with tempfile.TemporaryDirectory() as folder:
            generate_scenarios(folder, num_samples=args.twin_samples)
            time_folder(Path(folder), args.config_names, f"twin, 4 x {args.twin_samples} samples with frames")


if __name__ == "__main__":
    main()
