"""WMLM's multi-site model as it is, without the per-site fine-tuning, scored on each scenario's in-scenario windows;
with a finished benchmark run's output_dir, also its fine-tuned members' best checkpoints (in_scenario) or its LoRA
adapters (few_shot), alone and beside it.

    python benchmarks/multi_site_as_is.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --model_cache_dir outputs/exp_models --output_dir outputs/bench_in_seed0_e30
    python benchmarks/multi_site_as_is.py recipes/wmlm-small/benchmark/config.yaml --protocol few_shot --seeds 0 \
        --held_out scenario5 --train_fractions 0.1 --ensemble 1 --model_cache_dir outputs/bench_models \
        --output_dir outputs/bench_few_e30_s5

Takes `wmlm benchmark`'s arguments (in_scenario with multi_site, or few_shot) and reuses its cached multi-site
model, training it first on a cache miss. Prints validation and test top-1 (mean of the 3 steps) per scenario and
their mean for each ensemble: how much of the fine-tuning's validation lead is the multi-site model's own, and
whether it should vote beside its fine-tuned members or adapters (BENCHMARKS.md, "The multi-site run's length", "The
multi-site model votes" and "Few-shot with the 30-epoch sources").
"""

from pathlib import Path

import numpy as np
from peft import PeftModel
from transformers import TrainerState
from transformers.trainer_utils import get_last_checkpoint

from modeling_wmlm import WMLMForBeamPrediction
from wmlm import benchmark
from wmlm.training import parse_arguments


def fine_tuned_members(task, args, processor) -> list[dict]:
    """Predictions of the best checkpoint of each of the run's fine-tuned members (or LoRA adapters) on disk."""
    if args.protocol == "few_shot":
        return adapter_members(task, args, processor)
    members = []
    for seed in benchmark.member_seeds(task.seed, args.ensemble):
        folder = Path(benchmark.recipe_arguments(args, "finetune", task, seed)[1].output_dir)
        last = get_last_checkpoint(folder) if folder.is_dir() else None
        if last is None:
            continue
        best = folder / Path(TrainerState.load_from_json(f"{last}/trainer_state.json")
                             .best_model_checkpoint).name  # the state names it from the run's working directory
        trainer = benchmark.wmlm_trainer(WMLMForBeamPrediction.from_pretrained(best), processor, task, args,
                                         "finetune", seed)
        members.append(benchmark.predictions(trainer, task))
    return members


def adapter_members(task, args, processor) -> list[dict]:
    """Predictions of each of the run's few-shot LoRA adapters on disk, each on a fresh copy of the source."""
    members = []
    for seed in benchmark.member_seeds(task.seed, args.ensemble):
        folder = benchmark.adapter_folder(task, args, seed)
        if not folder.is_dir():
            continue
        model = PeftModel.from_pretrained(benchmark.source_model(task, args)[0], folder)
        members.append(benchmark.predictions(benchmark.wmlm_trainer(model, processor, task, args, "lora", seed), task))
    return members


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol == "cross_scenario" or (args.protocol == "in_scenario" and not args.multi_site):
        raise SystemExit("multi_site_as_is scores a multi-site model on a site: give --protocol in_scenario "
                         "--multi_site true, or --protocol few_shot")
    metrics, rows = benchmark.load_metrics(), {}
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        if task.source is None:  # few_shot's zero-shot task: the multi-site model is itself the row
            continue
        source = benchmark.source_as_it_is(task, args)
        as_is = benchmark.predictions(source, task)
        members = fine_tuned_members(task, args, source.data_collator.processor)
        ensembles = {"as it is": [as_is]}
        if members:
            ensembles |= {"fine-tuned": members, "fine-tuned + as it is": [as_is, *members]}
        score_ensembles(task, args, ensembles, metrics, rows)
    print_means(rows)


def score_ensembles(task, args, ensembles: dict[str, list[dict]], metrics, rows: dict):
    """Prints each named ensemble's validation and test top-1 (mean of the steps) on the task; adds them to rows."""
    for name, ensemble in ensembles.items():
        scored = benchmark.record("wmlm", task, args, benchmark.average(ensemble), metrics)
        top1 = [scored["validation_top1"], np.mean(scored["top1"])]
        rows.setdefault(name, []).append(top1)
        print(f"{task.scenario} seed {task.seed}, {name}: validation {top1[0]:.3f}, test {top1[1]:.3f}", flush=True)


def print_means(rows: dict):
    for name, scores in rows.items():
        print(f"mean, {name}: validation {{:.3f}}, test {{:.3f}}".format(*np.mean(scores, axis=0)))


if __name__ == "__main__":
    main()
