"""Turn DeepSense6G window examples into the tensors `WMLMForBeamPrediction` and `WMLMForPowerForecast` take."""

import numpy as np
import torch

from modeling_wmlm import WMLMConfig


class WindowCollator:
    """Batches `beam_prediction` / `power_forecast` examples.

    Frames are resized to the vision encoder's square input and scaled to [-1, 1]; a step whose frame or GPS fix is
    missing is marked absent in `modality_mask`, so the model never sees a placeholder as a reading.
    """

    def __init__(self, config: WMLMConfig):
        self.config = config
        vision = config.encoder_configs.get("vision")
        self.image_size = vision["image_size"] if vision else None

    def pixels(self, image) -> np.ndarray:
        if image is None:
            return np.zeros((3, self.image_size, self.image_size), np.float32)
        resized = image.convert("RGB").resize((self.image_size, self.image_size))
        return (np.asarray(resized, np.float32).transpose(2, 0, 1) / 127.5) - 1.0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"beam_power": torch.tensor(np.array([e["beam_power"] for e in examples]), dtype=torch.float32)}
        steps = batch["beam_power"].shape[1]
        mask = torch.ones(len(examples), steps, len(self.config.modalities), dtype=torch.bool)
        index = self.config.modality_index
        if "gps" in index:
            batch["gps_position"] = torch.tensor(np.array([e["gps_position"] for e in examples]), dtype=torch.float32)
            mask[..., index["gps"]] = torch.tensor([e["has_gps"] for e in examples])
        if "vision" in index:
            frames = [[self.pixels(image) for image in e["image"]] for e in examples]
            batch["pixel_values"] = torch.tensor(np.array(frames))
            mask[..., index["vision"]] = torch.tensor([e["has_image"] for e in examples])
        batch["modality_mask"] = mask
        labels = np.array([e["labels"] for e in examples])
        batch["labels"] = torch.tensor(labels, dtype=torch.long if labels.dtype.kind == "i" else torch.float32)
        return batch
