"""`python -m wmlm`: the whole method on this machine in one command, through the recipes and `wmlm benchmark`.

1. writes four digital-twin sites with camera frames (or takes `--data_dir`: real DeepSense scenario folders);
2. stage 1: aligns the modality encoders to the beam anchor on every site but the new one (recipes/<preset>/align);
3. stage 2: adapts the backbone and the beam head on those sites (recipes/<preset>/adapt/config_full.yaml);
4. on the new site: WMLM zero-shot, and a LoRA adapter on a tenth of its training passes (config_lora.yaml);
5. scores both against every baseline on the new site's test passes (`wmlm benchmark --protocol few_shot`);
6. renders the model cards of the stage-2 model and of the adapter;
7. writes OUT/report.md: the tables, the plots, the cards and where the checkpoints and the adapter are.
"""

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import HfArgumentParser

from dataset_scripts.deepsense6g.deepsense6g import discover_scenarios
from dataset_scripts.digital_twin import DEMO_SITES, generate_scenarios

from . import adapt, align, benchmark
from .hub import render_card
from .training import source_sites_argv

RECIPES = benchmark.RECIPES


@dataclass
class MainArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "data, checkpoints, results and report.md"})
    data_dir: list[str] = field(default_factory=list, metadata={
        "help": "real DeepSense scenario folders or zips (or a folder holding several); default: writes the digital "
                "twin's four sites"})
    held_out: str | None = field(default=None, metadata={"help": "the new site (a scenario folder name); default: "
                                                                  "the last scenario"})
    modalities: list[str] = field(default_factory=list, metadata={
        "help": "the modalities stage 1 aligns; default: beam vision gps on the twin, beam gps on data_dir "
                "(DeepSense 1-5 carry no frames)"})
    adapt_modalities: list[str] = field(default_factory=lambda: ["beam"], metadata={
        "help": "the aligned encoders the stage-2 model uses (on the twin's validation passes, power alone "
                "transferred to a new site best: BENCHMARKS.md)"})
    preset: str = field(default="wmlm-small", metadata={"help": "WMLM preset; its recipes/<preset>/ are run"})
    num_samples: int = field(default=500, metadata={"help": "samples per twin site"})
    align_epochs: int = field(default=5, metadata={"help": "stage-1 epochs (the recipe's are sized for real data)"})
    adapt_epochs: int = field(default=30, metadata={"help": "stage-2 and LoRA epochs (likewise)"})
    batch_size: int = field(default=16, metadata={
        "help": "stage-2 and LoRA windows per step: a twin site has a few hundred windows, so the recipes' 64 "
                "would give WMLM too few optimizer steps"})
    train_fraction: float = field(default=0.1, metadata={"help": "share of the new site's training passes for LoRA"})
    methods: list[str] = field(default_factory=lambda: list(benchmark.METHODS), metadata={
        "help": "benchmark methods, WMLM and the baselines"})
    ensemble: int = field(default=1, metadata={"help": "seed-ensemble members of every learned method"})
    seed: int = field(default=0, metadata={"help": "seeds the twin, the splits and the training"})
    epochs: int | None = field(default=None, metadata={
        "help": "every stage's and baseline's epochs instead (a quick look; tests)"})


def scenario_folders(args: MainArguments, out: Path) -> list[Path]:
    if args.data_dir:
        return discover_scenarios(args.data_dir, extract=str)
    folders = generate_scenarios(out / "twin", DEMO_SITES, num_samples=args.num_samples, seed=args.seed,
                                 image_size=(160, 90))
    print(f"[1/7] twin: {len(folders)} sites with camera frames, {args.num_samples} samples each, under {out / 'twin'}")
    return folders


def stage_arguments(args: MainArguments, out: Path, sources: list[Path], name: str, epochs: int) -> list[str]:
    return [*source_sites_argv(sources, args.seed, out / name, out / "cache"), "--num_train_epochs",
            str(args.epochs or epochs)]


def main(argv=None):
    (args,) = HfArgumentParser(MainArguments).parse_args_into_dataclasses(argv)
    datasets.disable_progress_bars()
    out = Path(args.output_dir)
    times, started = {}, time.perf_counter()
    folders = scenario_folders(args, out)
    held_out = next((f for f in folders if f.name == args.held_out), None) if args.held_out else folders[-1]
    if held_out is None:
        raise SystemExit(f"--held_out {args.held_out} is not among the scenarios {[f.name for f in folders]}")
    sources = [f for f in folders if f != held_out]
    if not sources:
        raise SystemExit("the main job needs at least two scenarios: sites to train on and a new site")
    args.modalities = args.modalities or (["beam", "gps"] if args.data_dir else ["beam", "vision", "gps"])
    times["data"] = time.perf_counter() - started

    print(f"[2/7] stage 1: aligning {', '.join(args.modalities)} to the beam anchor on "
          f"{', '.join(f.name for f in sources)}")
    align.main([str(RECIPES / args.preset / "align" / "config.yaml"),
                *stage_arguments(args, out, sources, "align", args.align_epochs), "--modalities", *args.modalities,
                "--anchor_modality", "beam"])
    times["stage 1"] = time.perf_counter() - started - sum(times.values())

    print(f"[3/7] stage 2: adapting the aligned encoders of {', '.join(args.adapt_modalities)} and the backbone to "
          f"beam prediction on {', '.join(f.name for f in sources)}")
    adapt.main([str(RECIPES / args.preset / "adapt" / "config_full.yaml"),
                *stage_arguments(args, out, sources, "adapt", args.adapt_epochs), "--model_name_or_path",
                str(out / "align"), "--modalities", *args.adapt_modalities, "--per_device_train_batch_size",
                str(args.batch_size)])
    times["stage 2"] = time.perf_counter() - started - sum(times.values())

    print(f"[4-5/7] {held_out.name}: WMLM zero-shot and LoRA on {args.train_fraction:g} of its training passes, "
          f"against {', '.join(m for m in args.methods if m != 'wmlm')}")
    records = benchmark.main([
        str(RECIPES / args.preset / "benchmark" / "config.yaml"), "--data_dir", *map(str, folders),
        "--protocol", "few_shot", "--held_out", held_out.name, "--train_fractions", "0", str(args.train_fraction),
        "--wmlm_model_name_or_path", str(out / "adapt"), "--seeds", str(args.seed), "--methods", *args.methods,
        "--output_dir", str(out / "benchmark"), "--ensemble", str(args.ensemble),
        "--epochs", str(args.epochs or args.adapt_epochs),
        "--wmlm_recipe_overrides", f"per_device_train_batch_size={args.batch_size}",
        *(["--baseline_epochs", str(args.epochs)] if args.epochs else [])])
    times["new site and baselines"] = time.perf_counter() - started - sum(times.values())

    adapter = next((out / "benchmark" / "adapters").glob(f"{held_out.name}-seed{args.seed}-*"), None)
    cards = {"stage-2 model": out / "adapt"} | ({"LoRA adapter": adapter} if adapter else {})
    for folder in cards.values():
        render_card(str(folder), f"wmlm-demo/{folder.name}", records).save(folder / "README.md")
    print(f"[6/7] model cards: {', '.join(str(f / 'README.md') for f in cards.values())}")
    times["cards"] = time.perf_counter() - started - sum(times.values())

    report = out / "report.md"
    report.write_text(report_text(args, out, folders, held_out, records, cards, times))
    summary = steps_table(times) + "\n" + headline(records)
    (out / "summary.md").write_text(summary)
    print(f"[7/7] report: {report}\n\n{summary}")
    return records


def steps_table(times: dict) -> str:
    rows = [f"| {step} | {seconds:.0f} |" for step, seconds in times.items()]
    return "\n".join(["| step | seconds |", "|---|---|", *rows, f"| total | {sum(times.values()):.0f} |"]) + "\n"


def headline(records: list[dict]) -> str:
    """Top-1 on the new site's test passes (mean of the steps), per method and train fraction."""
    rows = sorted({(r["train_fraction"], r["method"]) for r in records},
                  key=lambda k: (k[0], list(benchmark.METHODS).index(k[1])))
    lines = ["| method | new-site passes trained on | test top-1 (mean of steps) |", "|---|---|---|"]
    for fraction, method in rows:
        top1 = np.mean([np.mean(r["top1"]) for r in records if (r["train_fraction"], r["method"]) == (fraction,
                                                                                                       method)])
        lines.append(f"| {method} | {'none (zero-shot)' if fraction == 0 else f'{fraction:g}'} | {top1:.3f} |")
    return "\n".join(lines) + "\n"


def report_text(args, out: Path, folders, held_out: Path, records, cards: dict, times: dict) -> str:
    source = "the digital twin (generated by this run)" if not args.data_dir else ", ".join(args.data_dir)
    tables = (out / "benchmark" / "results.md").read_text()
    plots = [p.name for p in sorted((out / "benchmark").glob("*.png"))]
    lines = [
        "# WMLM: the two-stage method, end to end", "",
        f"`python -m wmlm` on {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} with {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}. Data: {source}; sites {', '.join(f.name for f in folders)}. "
        f"The new site **{held_out.name}** is held out of stages 1 and 2; its passes are split 0.7 / 0.1 / 0.2 with "
        f"seed {args.seed}, and every number below is on its test passes.", "",
        f"Preset {args.preset}, run through its recipes (recipes/{args.preset}/): stage 1 aligns "
        f"{', '.join(args.modalities)} to the beam anchor ({args.epochs or args.align_epochs} epochs); the stage-2 "
        "model uses the aligned encoders of "
        f"{', '.join(args.adapt_modalities)} ({args.epochs or args.adapt_epochs} epochs, batch "
        f"{args.batch_size}; the LoRA adapter likewise). Every learned method is a seed ensemble of "
        f"{args.ensemble}.", "",
        "## Steps", "", steps_table(times),
        "## The new site: WMLM against the baselines", "",
        "Train fraction 0 is zero-shot: every method as trained on the other sites. The other rows train on "
        f"{args.train_fraction:g} of the new site's training passes (WMLM: a LoRA adapter on the stage-2 model; the "
        "GRU: its validation search, from scratch or from the GRU of the other sites). The interpolation ceiling "
        "sees the future and is a reference, not a method.", "", headline(records),
        "Every metric, mean ± std over seeds (`benchmark/results.json` has the records):", "", tables,
        "## Plots", "", *(f"![{p}](benchmark/{p})" for p in plots), "",
        "## Checkpoints and adapters", "",
        f"- stage 1 (aligned encoders): `{out / 'align'}`",
        f"- stage 2 (the multi-site model): `{out / 'adapt'}`",
        *([f"- LoRA adapter for {held_out.name}: `{cards['LoRA adapter']}`"] if "LoRA adapter" in cards else []),
        "", "```python", "import modeling_wmlm  # registers WMLM with the auto classes",
        "from peft import PeftModel", "from transformers import AutoModelForSequenceClassification, AutoProcessor",
        f"model = AutoModelForSequenceClassification.from_pretrained(\"{out / 'adapt'}\")",
        f"processor = AutoProcessor.from_pretrained(\"{out / 'adapt'}\")",
        *([f"adapted = PeftModel.from_pretrained(model, \"{cards['LoRA adapter']}\")"] if "LoRA adapter" in cards
          else []), "```", "",
    ]
    for name, folder in cards.items():
        card = (folder / "README.md").read_text()
        lines += [f"## Model card: {name} (`{folder / 'README.md'}`)", "", "<details><summary>the card</summary>", "",
                  card.split("---", 2)[-1].strip(), "", "</details>", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
