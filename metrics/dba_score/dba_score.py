"""The DeepSense 6G 2022 beam prediction challenge's distance-based accuracy (DBA) score."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Y_k = 1 - mean_n min_{i <= k} min(|pred_{n,i} - true_n| / delta, 1), over the k highest-scored beams, and
DBA = (Y_1 + Y_2 + Y_3) / 3, with delta = 5 beams. A near miss counts partly: beams of an oversampled codebook overlap.
Windows and horizon steps are pooled (each (window, step) is one n); `per_step` gives the score of each step alone.
"""
_CITATION = """DeepSense 6G Multi-Modal Beam Prediction Challenge 2022 (ITU AI/ML in 5G), evaluation: DBA-score."""
_KWARGS = """
Args:
    predictions: (N, horizon, num_beams) scores per beam.
    references: (N, horizon) 0-based best beam.
    delta: the distance, in beams, at which a miss scores zero (5 in the challenge).
    top_k: Y_1 .. Y_top_k are averaged (3 in the challenge).
Returns:
    {"dba": float, "y": [Y_1, Y_2, Y_3], "dba_per_step": [DBA of step 1, ...]}
"""


def dba(scores: np.ndarray, labels: np.ndarray, delta: float, top_k: int) -> tuple[float, list[float]]:
    """scores (n, num_beams), labels (n,) -> (DBA, [Y_1 .. Y_top_k])."""
    ranked = np.argsort(-scores, axis=-1, kind="stable")[:, :top_k]  # (n, top_k)
    distance = np.minimum(np.abs(ranked - labels[:, None]) / delta, 1.0)
    ys = [float(1 - np.minimum.accumulate(distance, axis=1)[:, k - 1].mean()) for k in range(1, top_k + 1)]
    return float(np.mean(ys)), ys


class DBAScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "references": datasets.Sequence(datasets.Value("int64")),
            }),
        )

    def _compute(self, predictions, references, delta=5.0, top_k=3):
        scores, labels = np.asarray(predictions, np.float64), np.asarray(references)
        pooled, ys = dba(scores.reshape(-1, scores.shape[-1]), labels.reshape(-1), delta, top_k)
        per_step = [dba(scores[:, h], labels[:, h], delta, top_k)[0] for h in range(labels.shape[1])]
        return {"dba": pooled, "y": ys, "dba_per_step": per_step}
