"""In-scenario WMLM whose multi-site model starts from stage-1 encoders instead of random ones: the issue's "stage-1
alignment on all scenarios". Stage 1 (the preset's align recipe: beam anchor, power + GPS) trains on the same
seed's training passes of every scenario, each scenario split on its own exactly as the benchmark splits it; the
multi-site model (config_full.yaml) then starts from its beam encoder, and the benchmark's own in-scenario WMLM
(fine-tuned members beside the multi-site model as it is) runs on it.

    python benchmarks/aligned_source.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --output_dir outputs/exp_aligned_source
    python benchmarks/aligned_source.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --reuse_from outputs/exp_aligned_source --wmlm_recipe_overrides learning_rate=1e-4 \
        --output_dir outputs/exp_aligned_finetune_lr1e-4

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site). Prints stage 1's validation retrieval, then validation
and test top-1 (mean of the 3 steps) per scenario and their mean, for the multi-site model as it is and for the
benchmark's WMLM from it (BENCHMARKS.md, "Stage-1 alignment on all scenarios"). With `--reuse_from`, an earlier run's
multi-site models are reused, so only the per-site fine-tuning trains, under any `--wmlm_recipe_overrides`.

Not `wmlm align --data_dir ../shared/deepsense6g`: the builder draws every scenario's sequence order from one
generator, so the scenarios after the first would split differently from the benchmark's one-scenario loads, and
stage 1 would see some of their test passes.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from multi_site_as_is import print_means, score_ensembles
from transformers import TrainingArguments

from dataset_scripts.deepsense6g import load_deepsense6g
from modeling_wmlm import WMLMForBeamPrediction, WMLMForContrastiveAlignment, WMLMProcessor
from wmlm import benchmark
from wmlm.align import AlignModelArguments, alignment_config, alignment_trainer
from wmlm.training import TRAINING_SUMMARY, DataArguments, parse_arguments, save_final, split_description


@dataclass
class AlignedSourceArguments:
    reuse_from: str | None = field(default=None, metadata={
        "help": "an earlier run's output_dir: reuse its aligned multi-site models (aligned-multi-site-SEED), so that "
                "only the per-site fine-tuning trains"})


def training_samples(source: benchmark.Task, cache_dir: str, num_beams: int) -> datasets.DatasetDict:
    """The single samples of the source's training and validation passes: each scenario split on its own."""
    loads = [load_deepsense6g([path], "samples", cache_dir=cache_dir, split_seed=source.seed, num_beams=num_beams,
                              split_fractions=benchmark.IN_SCENARIO_FRACTIONS) for path in source.paths]
    return datasets.DatasetDict({name: datasets.concatenate_datasets([load[name] for load in loads])
                                 for name in ("train", "validation")})


def align(source: benchmark.Task, args, seed: int) -> WMLMForContrastiveAlignment:
    """Stage 1 under the preset's align recipe on the source's passes."""
    recipe = benchmark.RECIPES / args.preset / "align" / "config.yaml"
    model_args, _, training = parse_arguments((AlignModelArguments, DataArguments, TrainingArguments), [
        str(recipe), "--modalities", *args.modalities, "--output_dir", str(Path(args.output_dir) / f"align-{seed}"),
        "--seed", str(seed), "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true"])
    samples = training_samples(source, str(Path(args.output_dir) / "cache"), alignment_config(model_args).num_beams)
    trainer = alignment_trainer(model_args, samples, training)[0]
    trainer.train()
    print(f"stage 1, split seed {source.seed}, training seed {seed}: {trainer.evaluate()}")
    return trainer.model


def data_arguments(source: benchmark.Task) -> DataArguments:
    """The source's data as the training summary records them: each scenario split in_scenario with its seed."""
    return DataArguments(data_dir=source.paths, split_fractions=list(benchmark.IN_SCENARIO_FRACTIONS),
                         split_seed=source.seed)


def model_folder(output_dir: str, source: benchmark.Task) -> Path:
    return Path(output_dir) / f"aligned-multi-site-{source.seed}"


def aligned_multi_site_model(source: benchmark.Task, args, seed: int) -> str:
    """The multi-site model trained from the aligned beam encoder, saved with its training summary; -> its folder."""
    alignment = align(source, args, seed)
    config = alignment.config.modalities_subset(args.wmlm_modalities)
    model = WMLMForBeamPrediction(config).load_alignment_encoders(alignment)
    processor = WMLMProcessor.from_config(config)
    trainer = benchmark.wmlm_trainer(model, processor, source, args, "full", seed)
    trainer.train()
    folder = str(model_folder(args.output_dir, source))
    save_final(trainer, processor, folder, data_arguments(source), "stage 2 from stage-1 encoders, multi-site")
    return folder


def reused_model(folder: Path, source: benchmark.Task) -> str:
    """An earlier run's aligned multi-site model, refused unless its summary names the source's scenarios and split."""
    if not (folder / TRAINING_SUMMARY).is_file():
        raise SystemExit(f"{folder} holds no aligned multi-site model: run once without --reuse_from")
    summary = json.loads((folder / TRAINING_SUMMARY).read_text())
    expected = {"datasets": [Path(path).name for path in source.paths],
                "split": split_description(data_arguments(source))}
    found = {key: summary[key] for key in expected}
    if found != expected:
        raise SystemExit(f"{folder} was trained on {found}, not on {expected}: reuse a run of the same data and seeds")
    return str(folder)


def main(argv=None):
    args, aligned = parse_arguments((benchmark.BenchmarkArguments, AlignedSourceArguments), argv)
    if args.protocol != "in_scenario" or not args.multi_site:
        raise SystemExit("aligned_source replaces the in-scenario multi-site model: give --protocol in_scenario "
                         "--multi_site true")
    config, metrics, rows, sources = benchmark.wmlm_config(args), benchmark.load_metrics(), {}, {}
    for task in benchmark.tasks(args, config):
        if task.seed not in sources:
            sources[task.seed] = (reused_model(model_folder(aligned.reuse_from, task.source), task.source)
                                  if aligned.reuse_from else
                                  aligned_multi_site_model(task.source, args, benchmark.source_seed(task, None)))
        # WMLM's source model is then this checkpoint, as wmlm_model_name_or_path makes it few-shot
        args.wmlm_model_name_or_path = sources[task.seed]
        as_is = benchmark.predictions(benchmark.source_as_it_is(task, args), task)
        score_ensembles(task, args, {"multi-site model from stage-1 encoders, as it is": [as_is],
                                     "the benchmark's WMLM from it": [benchmark.wmlm(task, args)]}, metrics, rows)
    print_means(rows)


if __name__ == "__main__":
    main()
