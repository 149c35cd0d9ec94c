"""`python -m modeling_wmlm`: an end-to-end smoke run of the installed package, a few seconds on a CPU.

Builds a tiny beam-prediction model, runs it on random inputs, saves it, reloads it through `AutoModel...` and checks
that the reloaded model gives the same logits.
"""

import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from . import WMLMConfig, WMLMForBeamPrediction


def main():
    torch.manual_seed(0)
    config = WMLMConfig.from_preset("wmlm-tiny")
    model = WMLMForBeamPrediction(config).eval()
    vision = config.encoder_configs["vision"]
    batch, steps = 2, config.history_len
    inputs = {
        "beam_power": torch.rand(batch, steps, config.num_beams),
        "pixel_values": torch.randn(batch, steps, vision["num_channels"], vision["image_size"], vision["image_size"]),
        "gps_position": 50 * torch.randn(batch, steps, 2),
    }
    labels = torch.randint(0, config.num_beams, (batch, config.horizon))
    with torch.no_grad():
        outputs = model(**inputs, labels=labels)
    print(f"built wmlm-tiny: {model.num_parameters():,} parameters, attention {config._attn_implementation}")
    print(f"forward: logits {tuple(outputs.logits.shape)} (batch, horizon, beams), loss {outputs.loss.item():.4f}")
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        print(f"saved: {sorted(p.name for p in Path(folder).iterdir())}")
        reloaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        difference = (reloaded(**inputs).logits - outputs.logits).abs().max().item()
    print(f"reloaded as {type(reloaded).__name__}: max |logit difference| {difference:.2e}")
    if difference > 1e-5:
        raise SystemExit("reloaded model disagrees with the saved one")
    print("smoke run OK")


if __name__ == "__main__":
    main()
