"""Regenerate every measured table in BENCHMARKS.md: one command, each table beside its command, date and machine.

    python benchmarks/regenerate.py                      # every section (hours on 2 CPU cores: see --list)
    python benchmarks/regenerate.py --sections latency scale

Each section's command prints its tables on stdout; they replace what stands between the section's markers
(`<!-- regenerate: NAME -->` ... `<!-- /regenerate: NAME -->`) in BENCHMARKS.md, under a line naming the command,
the date, the machine and the run time. Text outside the markers (what the numbers mean) is kept as it is: read it
again after a rerun. A command that fails leaves its section untouched and the run ends with its error.
"""

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "python"  # shown in BENCHMARKS.md; run with this interpreter

# name -> (command, minutes on 2 shared CPU cores when last run, the file holding its tables or None for stdout)
SECTIONS = {
    "prepare": ("python benchmarks/prepare_deepsense6g.py --data_dir ../shared/deepsense6g --twin_samples 500", 2,
                None),
    "twin_sanity": ("python -m dataset_scripts.digital_twin.sanity --output_dir outputs/twin_sanity", 2, None),
    "main_job": ("python -m wmlm --output_dir outputs/demo", 10, "outputs/demo/summary.md"),
    "main_job_real": ("python -m wmlm --data_dir ../shared/deepsense6g --held_out scenario5 "
                      "--output_dir outputs/real_main", 20, "outputs/real_main/summary.md"),
    "throughput": ("python benchmarks/model_throughput.py --presets wmlm-tiny wmlm-small wmlm-base --batch_size 8", 5,
                   None),
    "latency": ("python benchmarks/latency.py --presets wmlm-small wmlm-base --batch_sizes 1 64", 10, None),
    "scale": ("python benchmarks/scale.py --presets wmlm-small wmlm-base wmlm-2.4b --cpu_runs forward lora_step", 15,
              None),
    "anchor_ablation": ("python benchmarks/anchor_ablation.py --output_dir outputs/anchor_ablation --num_samples 300 "
                        "--epochs 5", 30, "outputs/anchor_ablation/results.md"),
    "quality_in_scenario": ("wmlm benchmark recipes/wmlm-small/benchmark/config.yaml --output_dir outputs/bench_in",
                            180, "outputs/bench_in/results.md"),
    "quality_cross_scenario": ("wmlm benchmark recipes/wmlm-small/benchmark/config.yaml --protocol cross_scenario "
                               "--seeds 0 --ensemble 1 --model_cache_dir outputs/bench_models "
                               "--output_dir outputs/bench_cross", 90, "outputs/bench_cross/results.md"),
    "quality_few_shot": ("wmlm benchmark recipes/wmlm-small/benchmark/config.yaml --protocol few_shot --seeds 0 "
                         "--train_fractions 0 0.1 --ensemble 1 --model_cache_dir outputs/bench_models "
                         "--output_dir outputs/bench_few_shot", 190, "outputs/bench_few_shot/results.md"),
}


@dataclass
class RegenerateArguments:
    sections: list[str] = field(default_factory=lambda: list(SECTIONS), metadata={
        "help": f"which tables, from {list(SECTIONS)}"})
    benchmarks_md: str = field(default=str(ROOT / "BENCHMARKS.md"), metadata={"help": "the file to update"})
    list: bool = field(default=False, metadata={"help": "print the sections, their commands and run times"})


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    cpu = names[0] if names else platform.processor()
    # The kernels torch picks for this CPU (AVX2, AVX-512) round differently, enough to move a trained model's row.
    return f"{cpu}, {torch.get_num_threads()} threads, {platform.system()} {platform.machine()}, torch " \
        f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()} kernels)"


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- regenerate: {re.escape(name)} -->\n).*?(<!-- /regenerate: {re.escape(name)} -->)",
                         re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"BENCHMARKS.md has no '<!-- regenerate: {name} -->' ... '<!-- /regenerate: {name} -->' "
                         f"markers: add them where the section's tables belong")
    return pattern.sub(lambda match: match.group(1) + body + match.group(2), text, count=1)


def run_section(name: str, command: str, tables: str | None = None) -> str:
    """Run the command from the repository root; -> the block: its command, date, machine, run time and its tables
    (stdout, or the file `tables` it writes)."""
    argv = shlex.split(command)
    argv = [sys.executable, *argv[1:]] if argv[0] == PYTHON else [sys.executable, "-m", "wmlm.cli", *argv[1:]] \
        if argv[0] == "wmlm" else argv
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")  # else DeepSpeed prints its guess on stdout, into the table
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"section {name}: `{command}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    minutes = (time.perf_counter() - started) / 60
    output = (ROOT / tables).read_text() if tables else result.stdout
    return (f"    {command}\n\n_Regenerated {time.strftime('%Y-%m-%d')} on {machine()}, {minutes:.1f} min._\n\n"
            f"{output.strip()}\n")


def main(argv=None):
    (args,) = HfArgumentParser(RegenerateArguments).parse_args_into_dataclasses(argv)
    if args.list:
        for name, (command, minutes, _) in SECTIONS.items():
            print(f"{name:24s} ~{minutes:4d} min  {command}")
        return
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    path = Path(args.benchmarks_md)
    for name in args.sections:
        replace_section(path.read_text(), name, "")  # every marker is there before hours are spent
    for name in args.sections:
        command, minutes, tables = SECTIONS[name]
        print(f"[{name}] {command} (about {minutes} min)", flush=True)
        section = run_section(name, command, tables)  # read the file after the run: edits made meanwhile are kept
        path.write_text(replace_section(path.read_text(), name, section))


if __name__ == "__main__":
    main()
