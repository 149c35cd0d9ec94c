"""How far the best beam's own past track predicts its future: kinematic extrapolations with no learned parameters,
scored with the benchmark's top-1 per step on each scenario's in-scenario windows.

    python benchmarks/beam_extrapolation.py recipes/wmlm-small/benchmark/config.yaml --seeds 0

Takes `wmlm benchmark`'s arguments (in_scenario) and trains nothing. Four predictors per step h = 1..horizon:
- prior: the training windows' most frequent best beam at that step, whatever the history;
- persistence: the last best beam;
- beam line: a least-squares line through the past best beams, read h steps ahead;
- centroid line: the same through each past step's sub-beam centroid (a softmax of the power in dB / 1 dB over the
  best beam and its 4 neighbours each side), the best of the slopes' damping factors 0, 0.25, ... 1 on each split
  (an upper bound, chosen on the split it is scored on).
If they stay far below the learned methods, the future beam is not a missed geometric cue in the history
(BENCHMARKS.md, "How far the best beam's own track goes").
"""

import numpy as np
import torch

from modeling_wmlm.modeling_wmlm import relative_power_db
from wmlm import benchmark
from wmlm.training import parse_arguments

CENTROID_HALF_WIDTH, CENTROID_TEMPERATURE_DB = 4, 1.0
DAMPING = np.linspace(0, 1, 5)


def centroids(power: np.ndarray) -> np.ndarray:
    """(N, T, B) linear power -> (N, T) sub-beam position of the best beam, power-weighted over its neighbours."""
    decibels = relative_power_db(torch.as_tensor(power, dtype=torch.float64)).numpy()
    best = decibels.argmax(-1)[..., None]  # (N, T, 1)
    offsets = np.arange(-CENTROID_HALF_WIDTH, CENTROID_HALF_WIDTH + 1)
    beams = np.clip(best + offsets, 0, power.shape[-1] - 1)  # (N, T, 2w+1)
    weights = np.exp(np.take_along_axis(decibels, beams, -1) / CENTROID_TEMPERATURE_DB)
    return (weights * beams).sum(-1) / weights.sum(-1)


def line_forecast(track: np.ndarray, horizon: int, damping: float = 1.0) -> np.ndarray:
    """(N, T) positions -> (N, horizon): a least-squares line through them, its slope scaled by `damping`."""
    steps = np.arange(track.shape[1]) - (track.shape[1] - 1)  # the last step at 0
    slope, intercept = np.polyfit(steps, track.T, 1)
    ahead = np.arange(1, horizon + 1)
    return intercept[:, None] + damping * slope[:, None] * ahead


def top1_per_step(positions: np.ndarray, future_power: np.ndarray) -> np.ndarray:
    beams = np.clip(np.rint(positions), 0, future_power.shape[-1] - 1).astype(int)
    return (beams == future_power.argmax(-1)).mean(0)


def scores(split: dict, train: dict) -> dict[str, np.ndarray]:
    horizon = split["labels"].shape[1]
    prior = [np.bincount(step, minlength=train["labels"].shape[-1]).argmax() for step in train["labels"].argmax(-1).T]
    last = split["beam_index"][:, -1:].astype(float)
    track = centroids(split["beam_power"])
    by_damping = [top1_per_step(line_forecast(track, horizon, d), split["labels"]) for d in DAMPING]
    return {"prior": top1_per_step(np.broadcast_to(np.array(prior, float), (len(last), horizon)), split["labels"]),
            "persistence": top1_per_step(np.repeat(last, horizon, 1), split["labels"]),
            "beam line": top1_per_step(line_forecast(split["beam_index"].astype(float), horizon), split["labels"]),
            "centroid line (best damping)": max(by_damping, key=np.mean)}


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario":
        raise SystemExit("beam_extrapolation scores in-scenario windows: give --protocol in_scenario")
    print("| scenario | seed | split | predictor | top-1 per step | mean |\n|---|---|---|---|---|---|")
    for task in benchmark.tasks(args, benchmark.wmlm_config(args)):
        for name in ("validation", "test"):
            for predictor, top1 in scores(task.data[name], task.data["train"]).items():
                steps = " / ".join(f"{value:.3f}" for value in top1)
                print(f"| {task.scenario} | {task.seed} | {name} | {predictor} | {steps} | {top1.mean():.3f} |")


if __name__ == "__main__":
    main()
