"""The README's main job end to end on a small twin: both stages through the recipes, the new site through the
benchmark, the cards and the report."""

import json

import pytest
import torch
from peft import PeftModel

from modeling_wmlm import WMLMForBeamPrediction, WMLMProcessor
from wmlm import benchmark
from wmlm.__main__ import main
from wmlm.export import example_inputs


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    records = main(["--output_dir", str(out), "--num_samples", "200", "--epochs", "1", "--preset", "wmlm-tiny"])
    return out, records


def test_main_job_runs_every_stage_and_writes_the_report(demo):
    out, records = demo
    # Every method zero-shot and with a tenth of the new site's passes, on the new site only.
    assert {(r["method"], r["train_fraction"]) for r in records} == {
        (m, f) for m in benchmark.METHODS for f in (0.0, 0.1)}
    assert {r["scenario"] for r in records} == {"twin4"} and {r["protocol"] for r in records} == {"few_shot"}
    # The stages never saw the new site.
    for stage in ("align", "adapt"):
        summary = json.loads((out / stage / "training_summary.json").read_text())
        assert summary["datasets"] == ["twin1", "twin2", "twin3"], stage
    report = (out / "report.md").read_text()
    for words in ("## Steps", "| wmlm | none (zero-shot) |", "| gru | 0.1 |", "| twin4 | 0.1 | persistence |",
                  "## Model card: stage-2 model", "## Model card: LoRA adapter", str(out / "adapt")):
        assert words in report, words
    for plot in ("top1_per_horizon", "top1_per_scenario", "sweep_curve", "confusion"):
        assert f"(benchmark/{plot}.png)" in report and (out / "benchmark" / f"{plot}.png").is_file()
    assert "model-index" in (out / "adapt" / "README.md").read_text()  # the benchmark's numbers on the card
    summary = (out / "summary.md").read_text()  # what BENCHMARKS.md's main-job table is regenerated from
    assert "| total |" in summary and "| wmlm | 0.1 |" in summary and "| gru | none (zero-shot) |" in summary


def test_the_reported_adapter_loads_on_the_stage_2_model(demo):
    out, _ = demo
    (adapter,) = (out / "benchmark" / "adapters").iterdir()
    assert "base_model: " + str(out / "adapt") in (adapter / "README.md").read_text()
    base = WMLMForBeamPrediction.from_pretrained(out / "adapt").eval()
    inputs = example_inputs(WMLMProcessor.from_pretrained(out / "adapt"), batch_size=2)
    before = base(**inputs).logits
    adapted = PeftModel.from_pretrained(base, adapter).eval()(**inputs).logits
    assert adapted.shape == (2, 3, 64) and not torch.allclose(adapted, before)  # the head was trained on the site


def test_main_job_refuses_an_unknown_new_site(tmp_path):
    with pytest.raises(SystemExit, match="--held_out twin9 is not among"):
        main(["--output_dir", str(tmp_path), "--num_samples", "60", "--held_out", "twin9"])
