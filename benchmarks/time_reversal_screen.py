"""Screen: time-reversed windows as extra training windows, on the benchmark's GRU (power alone), validation only.

    python benchmarks/time_reversal_screen.py \
        --data_dir ../shared/deepsense6g/scenario3 ../shared/deepsense6g/scenario4 \
        --seeds 0 1 2 --multi_site false --output_dir outputs/reversal_screen

In scenarios 3 and 4 the vehicles pass the base station both ways, so the beam index sweeps 63 -> 3 and 3 -> 63
(BENCHMARKS.md). A window read backwards (the 3 future power vectors, then the 5 past ones, reversed) is then a
pass in the other direction. Each task trains two GRUs (hidden 128, lr 3e-3, soft labels) with and without the
reversed windows and prints their validation top-1 (mean of the 3 steps and the 2 seeds); test is never read.
"""

import numpy as np
import torch

from wmlm import benchmark
from wmlm.training import parse_arguments


def reversed_windows(train: dict) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, B) history and (N, H, B) future power -> the same windows read backwards in time."""
    whole = np.concatenate([train["beam_power"], train["labels"]], 1)[:, ::-1]
    history = train["beam_power"].shape[1]
    return np.ascontiguousarray(whole[:, :history]), np.ascontiguousarray(whole[:, history:])


def validation_top1(task, args, features: dict, labels: np.ndarray) -> float:
    targets = benchmark.beam_targets(labels, args.soft_labels)
    validation_labels = task.data["validation"]["labels"].argmax(-1)
    horizon, num_beams = labels.shape[1:]
    scores = []
    for seed in benchmark.member_seeds(task.seed, 2):
        torch.manual_seed(seed)
        model = benchmark.GRUBeamPredictor(features["train"].shape[-1], 128, horizon, num_beams)
        scores.append(benchmark.fit(model, features, targets, validation_labels, args.baseline_epochs, 3e-3,
                                    args.batch_size, seed)[0])
    return float(np.mean(scores))


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        features = benchmark.split_features(task.data, ("beam",))
        power, future = reversed_windows(task.data["train"])
        augmented = {**features, "train": torch.cat([features["train"],
                                                     benchmark.step_features(power, None, ("beam",))])}
        plain = validation_top1(task, args, features, task.data["train"]["labels"])
        both = validation_top1(task, args, augmented, np.concatenate([task.data["train"]["labels"], future]))
        print(f"{task.scenario} seed {task.seed}: validation top-1 {plain:.3f}, with reversed windows {both:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
