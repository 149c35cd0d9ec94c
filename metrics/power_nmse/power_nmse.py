"""Normalised mean squared error of forecast beam power vectors, in dB."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """NMSE = mean_n ||p_hat_n - p_n||^2 / ||p_n||^2 over power vectors, reported as 10 log10(NMSE) dB,
pooled and per horizon step."""
_KWARGS = """
Args:
    predictions: (N, horizon, num_beams) forecast linear power.
    references: (N, horizon, num_beams) measured linear power.
Returns:
    {"nmse_db": float, "nmse_db_per_step": [...]}
"""


class PowerNMSE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                "references": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            }),
        )

    def _compute(self, predictions, references):
        predicted, target = np.asarray(predictions, np.float64), np.asarray(references, np.float64)
        nmse = ((predicted - target) ** 2).sum(-1) / np.maximum((target**2).sum(-1), 1e-30)  # (N, H)
        with np.errstate(divide="ignore"):  # an exact forecast is -inf dB
            return {"nmse_db": float(10 * np.log10(nmse.mean())),
                    "nmse_db_per_step": (10 * np.log10(nmse.mean(0))).tolist()}
