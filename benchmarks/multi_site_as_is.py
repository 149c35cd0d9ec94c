"""WMLM's multi-site model as it is, without the per-site fine-tuning, scored on each scenario's in-scenario windows.

    python benchmarks/multi_site_as_is.py recipes/wmlm-small/benchmark/config.yaml --seeds 0 --ensemble 1 \
        --model_cache_dir outputs/exp_models --output_dir outputs/exp_in_e30

Takes `wmlm benchmark`'s arguments (in_scenario, multi_site) and reuses its cached multi-site model, training it
first on a cache miss. Prints validation and test top-1 (mean of the 3 steps) per scenario and their mean: how much
of the fine-tuning's validation lead is the multi-site model's own (BENCHMARKS.md, "The multi-site run's length").
"""

import numpy as np

from wmlm import benchmark
from wmlm.training import parse_arguments


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario" or not args.multi_site:
        raise SystemExit("multi_site_as_is scores the in_scenario multi-site model: give --protocol in_scenario "
                         "--multi_site true")
    metrics, rows = benchmark.load_metrics(), []
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        model, processor = benchmark.trained_model(task.source, args, benchmark.member_seeds(task.seed, 1)[0])
        trainer = benchmark.wmlm_trainer(model, processor, task, args, "finetune", task.seed)
        scored = benchmark.record("wmlm", task, args, benchmark.predictions(trainer, task), metrics)
        rows.append((scored["validation_top1"], np.mean(scored["top1"])))
        print(f"{task.scenario} seed {task.seed}: validation {rows[-1][0]:.3f}, test {rows[-1][1]:.3f}", flush=True)
    print("mean: validation {:.3f}, test {:.3f}".format(*np.mean(rows, axis=0)))


if __name__ == "__main__":
    main()
