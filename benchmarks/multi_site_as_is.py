"""WMLM's multi-site model as it is, without the per-site fine-tuning, scored on each scenario's in-scenario windows;
with a finished benchmark run's output_dir, also its fine-tuned members' best checkpoints, alone and beside it.

    python benchmarks/multi_site_as_is.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --model_cache_dir outputs/exp_models --output_dir outputs/bench_in_seed0_e30

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site) and reuses its cached multi-site model, training it
first on a cache miss. Prints validation and test top-1 (mean of the 3 steps) per scenario and their mean for each
ensemble: how much of the fine-tuning's validation lead is the multi-site model's own, and whether it should vote
beside its fine-tuned members (BENCHMARKS.md, "The multi-site run's length" and "The multi-site model votes").
"""

from pathlib import Path

import numpy as np
from transformers import TrainerState
from transformers.trainer_utils import get_last_checkpoint

from modeling_wmlm import WMLMForBeamPrediction
from wmlm import benchmark
from wmlm.training import parse_arguments


def fine_tuned_members(task, args, processor) -> list[dict]:
    """Predictions of the best checkpoint of each of the run's fine-tuned members that is on disk."""
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


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario" or not args.multi_site:
        raise SystemExit("multi_site_as_is scores the in_scenario multi-site model: give --protocol in_scenario "
                         "--multi_site true")
    metrics, rows = benchmark.load_metrics(), {}
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        source = benchmark.source_as_it_is(task, args)
        as_is = benchmark.predictions(source, task)
        members = fine_tuned_members(task, args, source.data_collator.processor)
        ensembles = {"as it is": [as_is]}
        if members:
            ensembles |= {"fine-tuned": members, "fine-tuned + as it is": [as_is, *members]}
        for name, ensemble in ensembles.items():
            scored = benchmark.record("wmlm", task, args, benchmark.average(ensemble), metrics)
            top1 = [scored["validation_top1"], np.mean(scored["top1"])]
            rows.setdefault(name, []).append(top1)
            print(f"{task.scenario} seed {task.seed}, {name}: validation {top1[0]:.3f}, test {top1[1]:.3f}",
                  flush=True)
    for name, scores in rows.items():
        print(f"mean, {name}: validation {{:.3f}}, test {{:.3f}}".format(*np.mean(scores, axis=0)))


if __name__ == "__main__":
    main()
