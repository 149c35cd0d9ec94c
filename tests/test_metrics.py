"""The evaluate metric modules in metrics/, loaded offline from their folders, against hand-computed values."""

from pathlib import Path

import evaluate
import numpy as np
import pytest

METRICS = Path(__file__).resolve().parents[1] / "metrics"


def load(name):
    return evaluate.load(str(METRICS / name))


def scores_ranking(*rankings, num_beams=64):
    """Scores whose descending order starts with the given beams, one (horizon-long) list of rankings per window."""
    out = np.zeros((len(rankings), len(rankings[0]), num_beams), np.float32)
    for n, steps in enumerate(rankings):
        for h, ranked in enumerate(steps):
            for position, beam in enumerate(ranked):
                out[n, h, beam] = 10.0 - position
    return out


def test_topk_per_horizon_step():
    # window 0: step 1 ranks (5, 9, 1), truth 9 -> top-1 miss, top-3 hit; step 2 ranks (2, ...), truth 2 -> hit.
    # window 1: step 1 truth 1 -> top-3 hit (third); step 2 truth 40, not in the top 5 (2, 3, 4, 5, 6).
    predictions = scores_ranking([[5, 9, 1], [2, 3]], [[7, 8, 1], [2, 3, 4, 5, 6]])
    result = load("beam_topk").compute(predictions=predictions, references=[[9, 2], [1, 40]])
    assert result == {"top1": [0.0, 0.5], "top3": [1.0, 0.5], "top5": [1.0, 0.5]}


def test_dba_score_as_the_challenge_defines_it():
    # truth 10, predictions (12, 10, 30): distances 0.4, 0, 1 -> per-k minima 0.4, 0, 0.
    # truth 0,  predictions (20, 3, 1):   distances 1, 0.6, 0.2 -> per-k minima 1, 0.6, 0.2.
    # Y_1 = 1 - (0.4 + 1) / 2 = 0.3, Y_2 = 1 - (0 + 0.6) / 2 = 0.7, Y_3 = 1 - (0 + 0.2) / 2 = 0.9; DBA = 0.6333.
    predictions = scores_ranking([[12, 10, 30]], [[20, 3, 1]])
    result = load("dba_score").compute(predictions=predictions, references=[[10], [0]])
    assert result["y"] == pytest.approx([0.3, 0.7, 0.9])
    assert result["dba"] == pytest.approx(1.9 / 3)
    assert result["dba_per_step"] == pytest.approx([1.9 / 3])
    perfect = load("dba_score").compute(predictions=scores_ranking([[4, 0, 0]]), references=[[4]])
    assert perfect["dba"] == pytest.approx(1.0)


def test_power_loss_against_the_measured_best_beam():
    power = np.full((2, 1, 64), 0.01, np.float32)
    power[0, 0, [3, 4]] = [1.0, 0.5]  # window 0 predicts beam 4: half the power, 3.01 dB lost
    power[1, 0, [7, 8]] = [1.0, 0.9]  # window 1 predicts beam 8: 0.46 dB lost
    predictions = scores_ranking([[4]], [[8]])
    result = load("beam_power_loss").compute(predictions=predictions, references=power)
    assert result["power_loss_db"] == pytest.approx([(10 * np.log10(2) + 10 * np.log10(1 / 0.9)) / 2], rel=1e-5)
    assert result["within_0p5db"] == [0.5] and result["within_1db"] == [0.5]


def test_power_nmse_in_db():
    target = np.ones((2, 2, 64), np.float32)
    predicted = target.copy()
    predicted[:, 0] *= 1.1  # step 1: NMSE 0.01 (-20 dB); step 2 exact
    result = load("power_nmse").compute(predictions=predicted, references=target)
    assert result["nmse_db_per_step"][0] == pytest.approx(-20.0, abs=1e-4)
    assert result["nmse_db"] == pytest.approx(10 * np.log10(0.005), abs=1e-4)


def test_calibration_error_and_adaptive_sweep():
    probabilities = np.zeros((4, 1, 64), np.float32)
    power = np.full((4, 1, 64), 0.01, np.float32)
    # Windows 0-1: 0.9 on beam 0, right once (ECE bin 0.9: accuracy 0.5). Windows 2-3: 0.6 on beam 5, 0.4 on beam 6,
    # right both times (bin 0.6: accuracy 1). ECE = 0.5 * |0.5 - 0.9| + 0.5 * |1 - 0.6| = 0.4.
    probabilities[:2, 0, [0, 1]] = [0.9, 0.1]
    probabilities[2:, 0, [5, 6]] = [0.6, 0.4]
    power[0, 0, 0] = 1.0
    power[1, 0, [0, 1]] = [0.5, 1.0]  # the best is the 0.1 beam: a 3 dB loss unless the sweep takes both
    power[2:, 0, [5, 6]] = [1.0, 0.2]
    result = load("beam_calibration").compute(predictions=probabilities, references=power, sweep_levels=(0.5, 0.95))
    assert result["ece"] == pytest.approx(0.4, abs=1e-6)
    narrow, wide = result["sweep"]
    assert narrow["beams_swept"] == 1.0 and narrow["within_1db"] == 0.75
    assert narrow["power_loss_db"] == pytest.approx(10 * np.log10(2) / 4, rel=1e-5)
    assert wide["beams_swept"] == 2.0 and wide["power_loss_db"] == 0.0 and wide["within_1db"] == 1.0
