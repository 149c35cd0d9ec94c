"""Does the received power level say how fast the best beam will move? Rank correlations on each scenario's
in-scenario training windows, with no learned parameters.

    python benchmarks/power_level_cue.py recipes/wmlm-small/benchmark/config.yaml --seeds 0

Takes `wmlm benchmark`'s arguments (in_scenario) and trains nothing. Per window, the future speed is the best beam's
move from the last history step to the last future step, in beams per step; the history speed is its move over the
history. The level is the strongest beam's power in dB at the last history step, the span that step's best-to-worst
beam spread in dB: both are what `log_minmax`, the beam encoder's reading, divides away. The residual is the future
speed less a least-squares line in the history speed, so its correlations are what the level adds to the history's
own speed (BENCHMARKS.md, "The received power level as an input").
"""

import numpy as np
import torch

from modeling_wmlm.modeling_wmlm import relative_power_db
from wmlm import benchmark
from wmlm.training import parse_arguments


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, tied values sharing their mean rank (speeds in whole beams tie often)."""
    ordinal = np.empty(len(x))
    ordinal[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, tie, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(tie, weights=ordinal) / counts)[tie]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """nan where either side is constant: it has no order to correlate (the table says so)."""
    rank_a, rank_b = ranks(a), ranks(b)
    if np.ptp(rank_a) == 0 or np.ptp(rank_b) == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def correlations(split: dict) -> dict[str, float]:
    power, history = split["beam_power"].astype(np.float64), split["beam_index"].astype(float)  # (N, T, B), (N, T)
    future = split["labels"].argmax(-1).astype(float)  # (N, horizon)
    history_speed = np.abs(history[:, -1] - history[:, 0]) / (history.shape[1] - 1)
    future_speed = np.abs(future[:, -1] - history[:, -1]) / future.shape[1]
    last = power[:, -1]  # (N, B): the last history step
    level = 10 * np.log10(np.maximum(last.max(-1), 1e-12))
    span = -relative_power_db(torch.as_tensor(last)).amin(-1).numpy()
    residual = future_speed - np.poly1d(np.polyfit(history_speed, future_speed, 1))(history_speed)
    low, high = np.percentile(level, [5, 95])
    return {"windows": len(power), "level 5-95% (dB)": f"{low:.1f} to {high:.1f}",
            "history speed ~ future speed": spearman(history_speed, future_speed),
            "level ~ future speed": spearman(level, future_speed), "level ~ residual": spearman(level, residual),
            "span ~ residual": spearman(span, residual)}


def main(argv=None):
    (args,) = parse_arguments((benchmark.BenchmarkArguments,), argv)
    if args.protocol != "in_scenario":
        raise SystemExit("power_level_cue reads in-scenario training windows: give --protocol in_scenario")
    rows = [(task, correlations(task.data["train"])) for task in benchmark.tasks(args, benchmark.wmlm_config(args))]
    columns = list(rows[0][1])
    print("| scenario | seed | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 2) + "|")
    for task, values in rows:
        cells = [("constant" if np.isnan(v) else f"{v:.2f}") if isinstance(v, float) else str(v)
                 for v in values.values()]
        print(f"| {task.scenario} | {task.seed} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
