"""From DeepSense6G window examples to model inputs, through the model's processor.

The model config is the one source of truth for the window shape: build the dataset with `window_kwargs(config)`,
and the collator checks every example against it.
"""

import numpy as np
import torch

from modeling_wmlm import WMLMConfig, WMLMProcessor


def window_kwargs(config: WMLMConfig) -> dict:
    """DeepSense6G builder arguments for windows that fit `config`: history, horizon and codebook size."""
    return {"history_len": config.history_len, "horizon": config.horizon, "num_beams": config.num_beams}


class WindowCollator:
    """Batches `beam_prediction` / `power_forecast` examples with a `WMLMProcessor`.

    A step whose frame or GPS fix is missing is marked absent in `modality_mask`. A modality that no example in the
    batch has (a site without a camera) is not passed at all, so its encoder does no work.
    """

    def __init__(self, processor: WMLMProcessor):
        self.processor = processor
        self.modalities = processor.feature_extractor.modalities

    def check_window(self, example: dict):
        extractor = self.processor.feature_extractor
        history, labels = np.shape(example["beam_power"]), np.shape(example["labels"])
        if history[0] != extractor.history_len or labels[0] != extractor.horizon:
            raise ValueError(f"a dataset window has {history[0]} past and {labels[0]} future steps, but the model "
                             f"expects history_len={extractor.history_len}, horizon={extractor.horizon}; build the "
                             f"dataset with wmlm.data.window_kwargs(config)")

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        for example in examples:
            self.check_window(example)
        inputs = {"beam_power": [e["beam_power"] for e in examples], "labels": [e["labels"] for e in examples]}
        if "gps" in self.modalities and any(any(e["has_gps"]) for e in examples):
            inputs["gps_position"] = [[p if ok else None for p, ok in zip(e["gps_position"], e["has_gps"], strict=True)]
                                      for e in examples]
        if "vision" in self.modalities and any(any(e["has_image"]) for e in examples):
            inputs["images"] = [e["image"] for e in examples]
        return dict(self.processor(**inputs))


def fit_normalization(processor: WMLMProcessor, config: WMLMConfig, train_split,
                      positions: bool = False) -> WMLMConfig:
    """`config` with the encoders' statistics fitted on a training split of windows or samples: the power statistics
    always (used by power_transform="log_standardize"), the position centre and scale only with `positions=True`."""
    gps = None
    if positions and "gps_position" in train_split.column_names:
        present = np.array(train_split["has_gps"]) if "has_gps" in train_split.column_names else None
        gps = np.array([p if p is not None else [np.nan, np.nan] for p in train_split["gps_position"]], np.float64)
        if present is not None:
            gps[~present] = np.nan
    return processor.fit_normalization(config, beam_power=np.array(train_split["beam_power"]), gps_position=gps)


class SampleCollator:
    """Batches `samples` examples (one measurement each) for stage-1 alignment, asking the model for its loss."""

    def __init__(self, processor: WMLMProcessor):
        self.processor = processor
        self.modalities = processor.feature_extractor.modalities

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        inputs = {"beam_power": [e["beam_power"] for e in examples]}
        if "gps" in self.modalities and any(e["gps_position"] is not None for e in examples):
            inputs["gps_position"] = [e["gps_position"] for e in examples]
        if "vision" in self.modalities and any(e["image"] is not None for e in examples):
            inputs["images"] = [e["image"] for e in examples]
        return {**self.processor(**inputs), "return_loss": True}
