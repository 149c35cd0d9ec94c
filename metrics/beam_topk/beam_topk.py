"""Top-k beam accuracy per horizon step."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """Share of windows whose true future beam is among the k highest-scored beams, for each horizon step."""
_KWARGS = """
Args:
    predictions: (N, horizon, num_beams) scores (logits or probabilities) per beam.
    references: (N, horizon) 0-based index of the best beam.
    k: the k values (default (1, 3, 5)).
Returns:
    {"top1": [step 1, step 2, ...], "top3": [...], "top5": [...]}, one accuracy per horizon step.
"""


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N, H) bool: the label is among the k highest scores (ties broken towards the lower beam index)."""
    ranked = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return (ranked == labels[..., None]).any(-1)


class BeamTopK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "references": datasets.Sequence(datasets.Value("int64")),
            }),
        )

    def _compute(self, predictions, references, k=(1, 3, 5)):
        scores, labels = np.asarray(predictions, np.float64), np.asarray(references)
        return {f"top{kk}": topk_hits(scores, labels, kk).mean(0).tolist() for kk in k}
