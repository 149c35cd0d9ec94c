import pytest
import torch

from modeling_wmlm import WMLMConfig


@pytest.fixture
def tiny_config():
    return WMLMConfig.from_preset("wmlm-tiny")


def make_inputs(config, batch=4, steps=None, seed=0):
    """Random inputs for every configured modality; `steps=None` gives stage-1 (per-sample) shapes."""
    generator = torch.Generator().manual_seed(seed)
    lead = (batch,) if steps is None else (batch, steps)
    inputs = {}
    if "beam" in config.modalities:
        inputs["beam_power"] = torch.rand(*lead, config.num_beams, generator=generator)
    if "vision" in config.modalities:
        vision = config.encoder_configs["vision"]
        shape = (vision["num_channels"], vision["image_size"], vision["image_size"])
        inputs["pixel_values"] = 2 * torch.rand(*lead, *shape, generator=generator) - 1  # processor scaling
    if "gps" in config.modalities:
        inputs["gps_position"] = 80 * torch.randn(*lead, 2, generator=generator)
    return inputs
