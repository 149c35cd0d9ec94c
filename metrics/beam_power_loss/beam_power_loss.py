"""How much received power the predicted beam loses against the best beam, from the measured power vector."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
For each window and horizon step: loss = 10 log10(P[best beam] / P[predicted beam]) dB, from the measured future power
vector P. Real 60 GHz labels are close calls (the best beam is often within 0.5 dB of the runner-up), so this says
how costly a miss is, where top-1 only says whether it is one. Also the share of predictions within 0.5 dB and 1 dB.
"""
_KWARGS = """
Args:
    predictions: (N, horizon, num_beams) scores per beam; the top-scored beam is the prediction.
    references: (N, horizon, num_beams) measured linear power of the future steps.
Returns:
    {"power_loss_db": [mean per step], "within_0p5db": [...], "within_1db": [...]}
"""


def power_loss_db(scores: np.ndarray, power: np.ndarray) -> np.ndarray:
    """(N, H) dB lost by the top-scored beam against the strongest beam."""
    chosen = np.take_along_axis(power, scores.argmax(-1)[..., None], axis=-1)[..., 0]
    return 10 * np.log10(power.max(-1) / np.maximum(chosen, 1e-30))


class BeamPowerLoss(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "references": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            }),
        )

    def _compute(self, predictions, references):
        loss = power_loss_db(np.asarray(predictions, np.float64), np.asarray(references, np.float64))
        return {"power_loss_db": loss.mean(0).tolist(), "within_0p5db": (loss <= 0.5).mean(0).tolist(),
                "within_1db": (loss <= 1.0).mean(0).tolist()}
