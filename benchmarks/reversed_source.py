"""In-scenario WMLM whose multi-site model also trains on every pass read backwards in time, while each site's
fine-tuning, validation and test stay as measured: time reversal in the multi-site stage alone.

    python benchmarks/reversed_source.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 \
        --model_cache_dir outputs/exp_models --output_dir outputs/exp_rev_source

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site; it sets `reversed_train_windows` for the multi-site
model alone). Prints validation and test top-1 (mean of the 3 steps) per scenario and their mean for the benchmark's
WMLM ensemble (the fine-tuned members beside the multi-site model as it is); BENCHMARKS.md, "Time reversal in the
multi-site stage alone". The multi-site model comes from the cache when `wmlm benchmark --reversed_train_windows
true` has trained it there.
"""

from dataclasses import replace

from multi_site_as_is import print_means, score_ensembles

from wmlm import benchmark
from wmlm.training import parse_arguments


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario" or not args.multi_site or args.reversed_train_windows:
        raise SystemExit("reversed_source reverses the in-scenario multi-site stage alone: give --protocol "
                         "in_scenario --multi_site true, and not --reversed_train_windows")
    config, metrics, rows = benchmark.wmlm_config(args), benchmark.load_metrics(), {}
    backwards = benchmark.tasks(replace(args, reversed_train_windows=True), config)
    for task, reversed_task in zip(benchmark.tasks(args, config), backwards, strict=True):
        task = replace(task, source=reversed_task.source)
        score_ensembles(task, args, {"multi-site stage also backwards": [benchmark.wmlm(task, args)]}, metrics, rows)
    print_means(rows)


if __name__ == "__main__":
    main()
