"""Calibration of beam probabilities, and the adaptive beam sweep they allow."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
ECE: expected calibration error of the top-1 probability (equal-width confidence bins, weighted by bin size).
Adaptive sweep: per window and step, sweep the fewest highest-probability beams whose probabilities sum to at least
p, then use the best measured one of them. For each p of a grid: the mean number of beams swept, the mean power loss
in dB against the best beam, and the share of sweeps within 1 dB of it. A calibrated model reaches the best beam with
few measurements when it is sure and sweeps wider only when it is not.
"""
_KWARGS = """
Args:
    predictions: (N, horizon, num_beams) probabilities (rows sum to 1; apply a softmax to logits first).
    references: (N, horizon, num_beams) measured linear power of the future steps (the best beam is its argmax).
    num_bins: ECE bins (default 15).
    sweep_levels: the grid of p (default 0.5, 0.7, 0.8, 0.9, 0.95, 0.99).
Returns:
    {"ece": float, "sweep": [{"p", "beams_swept", "power_loss_db", "within_1db"}, ...]}
"""


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, num_bins: int) -> float:
    """probabilities (n, B), labels (n,)."""
    confidence, predicted = probabilities.max(-1), probabilities.argmax(-1)
    correct = predicted == labels
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    gaps = [abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
            for b in range(num_bins) if (bins == b).any()]
    return float(np.sum(gaps))


def adaptive_sweep(probabilities: np.ndarray, power: np.ndarray, level: float) -> dict:
    """probabilities, power: (n, B)."""
    order = np.argsort(-probabilities, axis=-1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(probabilities, order, -1), axis=-1)
    swept = np.minimum((cumulative < level - 1e-9).sum(-1) + 1, probabilities.shape[-1])  # (n,)
    in_sweep = np.arange(probabilities.shape[-1])[None, :] < swept[:, None]
    measured = np.where(in_sweep, np.take_along_axis(power, order, -1), 0.0).max(-1)
    loss = 10 * np.log10(power.max(-1) / np.maximum(measured, 1e-30))
    return {"p": level, "beams_swept": float(swept.mean()), "power_loss_db": float(loss.mean()),
            "within_1db": float((loss <= 1.0).mean())}


class BeamCalibration(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "references": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            }),
        )

    def _compute(self, predictions, references, num_bins=15, sweep_levels=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99)):
        probabilities = np.asarray(predictions, np.float64)
        power = np.asarray(references, np.float64)
        probabilities, power = probabilities.reshape(-1, probabilities.shape[-1]), power.reshape(-1, power.shape[-1])
        return {"ece": expected_calibration_error(probabilities, power.argmax(-1), num_bins),
                "sweep": [adaptive_sweep(probabilities, power, level) for level in sweep_levels]}
