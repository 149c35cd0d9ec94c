"""In-scenario WMLM ensembles in one run: every member fine-tuned from the one multi-site model (the benchmark's
recipe), against each member fine-tuned from its own multi-site model trained with its own seed (as each GRU member
starts from its own multi-site GRU). Validation decides; test is printed beside it.

    python benchmarks/source_per_member.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --model_cache_dir outputs/exp_models --output_dir outputs/exp_source_per_member

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site). The multi-site models come from the cache when
present (`--model_cache_dir`), so they can be trained beforehand in parallel. Prints validation and test top-1
(mean of the 3 steps) per scenario and their mean for each ensemble (BENCHMARKS.md, "One multi-site model per
member").
"""

from dataclasses import replace
from pathlib import Path

from multi_site_as_is import print_means, score_ensembles

from wmlm import benchmark
from wmlm.training import parse_arguments


def fine_tuned(task, args, seed: int, start: int) -> dict:
    """Member `seed` fine-tuned from the multi-site model trained with seed `start` (its own run folder)."""
    model, processor = benchmark.source_model(task, args, start)
    args = replace(args, output_dir=str(Path(args.output_dir) / f"from_source{start}"))
    trainer = benchmark.wmlm_trainer(model, processor, task, args, "finetune", seed)
    trainer.train()
    return benchmark.predictions(trainer, task)


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario" or not args.multi_site:
        raise SystemExit("source_per_member compares in-scenario multi-site starts: give --protocol in_scenario "
                         "--multi_site true")
    metrics, rows = benchmark.load_metrics(), {}
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        seeds = benchmark.member_seeds(task.seed, args.ensemble)
        sources = [benchmark.predictions(benchmark.source_as_it_is(task, args, seed), task) for seed in seeds]
        own = [fine_tuned(task, args, seed, seed) for seed in seeds]
        shared = own[:1] + [fine_tuned(task, args, seed, seeds[0]) for seed in seeds[1:]]
        ensembles = {"one source, fine-tuned + as it is (the recipe)": sources[:1] + shared,
                     "own sources, fine-tuned": own,
                     "own sources, fine-tuned + each as it is": sources + own,
                     "own sources, fine-tuned + the first as it is": sources[:1] + own}
        score_ensembles(task, args, ensembles, metrics, rows)
    print_means(rows)


if __name__ == "__main__":
    main()
