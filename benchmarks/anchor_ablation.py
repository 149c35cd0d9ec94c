"""The anchor ablation: which stage-1 anchor gives the best stage-2 model on sites it never saw?

    python benchmarks/anchor_ablation.py --output_dir outputs/anchor_ablation --site_counts 4 6 --seeds 0 1 2

Digital-twin sites with camera frames. For each number of training sites (twin1.., the first 4 or 6) and seed:
stage 1 aligns the encoders with each anchor (beam, vision, joint) or is skipped (none); stage 2 then adapts to beam
prediction and, separately, to power forecast on the same sites (recipes/<preset>/align, adapt/config_full.yaml).
Every stage splits the training sites' passes 0.9 / 0.1 by sequence (validation picks the epoch). Scored on every
window of the unseen sites (twin7, twin8 by default): beam top-1 (mean of the 3 steps) and power-forecast NMSE (dB).
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import HfArgumentParser

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenario
from modeling_wmlm import WMLMConfig
from wmlm import adapt, align
from wmlm.benchmark import RECIPES
from wmlm.data import window_kwargs
from wmlm.training import source_sites_argv

ANCHORS = ("beam", "vision", "joint", "none")
TRAINING_SITES = ("twin1", "twin2", "twin3", "twin4", "twin5", "twin6")


@dataclass
class AblationArguments:
    output_dir: str = field(default="outputs/anchor_ablation", metadata={"help": "sites, checkpoints, results"})
    site_counts: list[int] = field(default_factory=lambda: [4, 6], metadata={
        "help": f"train on the first N of {list(TRAINING_SITES)}"})
    unseen_sites: list[str] = field(default_factory=lambda: ["twin7", "twin8"], metadata={"help": "scored sites"})
    anchors: list[str] = field(default_factory=lambda: list(ANCHORS), metadata={"help": "none: no stage 1"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "training seeds"})
    preset: str = field(default="wmlm-tiny", metadata={"help": "WMLM preset; its recipes are run"})
    num_samples: int = field(default=400, metadata={"help": "samples per twin site"})
    epochs: int | None = field(default=None, metadata={"help": "every stage's epochs instead of the recipes'"})


def stage_argv(args, recipe: Path, sites: list[Path], output_dir: Path, seed: int) -> list[str]:
    epochs = ["--num_train_epochs", str(args.epochs)] if args.epochs else []
    return [str(recipe), *source_sites_argv(sites, seed, output_dir, Path(args.output_dir) / "cache"), "--report_to",
            "none", "--disable_tqdm", "true", *epochs]


def run(args, sites: list[Path], unseen: dict, anchor: str, seed: int) -> dict:
    """Stage 1 with `anchor` (or none), then both stage-2 tasks; -> their scores on the unseen sites."""
    folder = Path(args.output_dir) / "runs" / f"{len(sites)}sites-{anchor}-seed{seed}"
    start = ["--model_name_or_path", ""]
    if anchor != "none":
        align.main(stage_argv(args, RECIPES / args.preset / "align" / "config.yaml", sites, folder / "align", seed)
                   + ["--modalities", "beam", "vision", "gps", "--anchor_modality", anchor])
        start = ["--model_name_or_path", str(folder / "align")]
    scores = {}
    for task, metric in (("beam_prediction", "top1"), ("power_forecast", "nmse_db")):
        trainer = adapt.main(stage_argv(args, RECIPES / args.preset / "adapt" / "config_full.yaml", sites,
                                        folder / task, seed) + start + [
            "--task", task, "--modalities", "beam", "vision", "gps", "--metric_for_best_model", metric,
            "--greater_is_better", str(metric == "top1")])
        scores[metric] = trainer.evaluate(unseen[task], metric_key_prefix="unseen")[f"unseen_{metric}"]
    return scores


def table(results: list[dict]) -> str:
    lines = ["| training sites | anchor | beam top-1 on unseen sites | power NMSE (dB) on unseen sites | seeds |",
             "|---|---|---|---|---|"]
    for count in sorted({r["sites"] for r in results}):
        for anchor in ANCHORS:
            mine = [r for r in results if (r["sites"], r["anchor"]) == (count, anchor)]
            if mine:
                top1, nmse = (np.array([r[k] for r in mine]) for k in ("top1", "nmse_db"))
                lines.append(f"| {count} | {anchor} | {top1.mean():.3f} ± {top1.std():.3f} | "
                             f"{nmse.mean():.2f} ± {nmse.std():.2f} | {len(mine)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    (args,) = HfArgumentParser(AblationArguments).parse_args_into_dataclasses(argv)
    datasets.disable_progress_bars()
    out = Path(args.output_dir)
    names = list(TRAINING_SITES[:max(args.site_counts)]) + args.unseen_sites
    folders = {name: generate_scenario(out / "twin", name, num_samples=args.num_samples, image_size=(160, 90))
               for name in names}
    shape = window_kwargs(WMLMConfig.from_preset(args.preset))
    unseen = {task: load_deepsense6g([str(folders[n]) for n in args.unseen_sites], task, split_fractions=(0, 0, 1),
                                     cache_dir=str(out / "cache"), **shape)["test"]
              for task in ("beam_prediction", "power_forecast")}
    results_path, results = out / "results.json", []
    for count in args.site_counts:
        sites = [folders[name] for name in TRAINING_SITES[:count]]
        for seed in args.seeds:
            for anchor in args.anchors:
                results.append({"sites": count, "anchor": anchor, "seed": seed,
                                **run(args, sites, unseen, anchor, seed)})
                results_path.write_text(json.dumps(results, indent=1))
                print(f"done: {results[-1]}", file=sys.stderr, flush=True)
    (out / "results.md").write_text(table(results))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
