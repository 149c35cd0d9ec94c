"""In-scenario WMLM whose multi-site model alone trains on augmented windows, while each site's fine-tuning,
validation and test stay as measured: a training-window augmentation in the multi-site stage alone.

    python benchmarks/augmented_source.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --reversed_train_windows true --model_cache_dir outputs/exp_models --output_dir outputs/exp_rev_source
    python benchmarks/augmented_source.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --faster_train_windows 2 --model_cache_dir outputs/exp_models --output_dir outputs/exp_faster_source

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site, and at least one augmentation:
`reversed_train_windows`, `faster_train_windows`), which it gives to the multi-site model alone. Prints validation
and test top-1 (mean of the 3 steps) per scenario and their mean for the benchmark's WMLM ensemble (the fine-tuned
members beside the multi-site model as it is); BENCHMARKS.md, "Time reversal in the multi-site stage alone" and
"Faster passes as extra training windows". The multi-site model comes from the cache when `wmlm benchmark` with the
same augmentation has trained it there.
"""

from dataclasses import replace

from multi_site_as_is import print_means, score_ensembles

from wmlm import benchmark
from wmlm.training import parse_arguments

AS_MEASURED = {"reversed_train_windows": False, "faster_train_windows": []}


def augmentation(args) -> str:
    """What the multi-site stage gets on top of the windows as measured, in words."""
    parts = ["backwards"] * args.reversed_train_windows + [f"at {k}x speed" for k in args.faster_train_windows]
    return "multi-site stage also " + " and ".join(parts)


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario" or not args.multi_site or replace(args, **AS_MEASURED) == args:
        raise SystemExit("augmented_source augments the in-scenario multi-site stage alone: give --protocol "
                         "in_scenario --multi_site true and --reversed_train_windows true or --faster_train_windows K")
    config, metrics, rows = benchmark.wmlm_config(args), benchmark.load_metrics(), {}
    augmented = benchmark.tasks(args, config)
    for task, augmented_task in zip(benchmark.tasks(replace(args, **AS_MEASURED), config), augmented, strict=True):
        task = replace(task, source=augmented_task.source)
        score_ensembles(task, args, {augmentation(args): [benchmark.wmlm(task, args)]}, metrics, rows)
    print_means(rows)


if __name__ == "__main__":
    main()
