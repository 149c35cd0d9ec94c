"""WMLM processor: raw DeepSense-style readings (lists, numpy arrays, lat/lon, PIL frames) -> model inputs.

`WMLMImageProcessor` resizes and scales camera frames; `WMLMFeatureExtractor` turns power vectors, positions and
labels into checked tensors and fits the normalisation statistics; `WMLMProcessor` combines the two, saves beside the
model (`processor_config.json`) and loads with `AutoProcessor`. Only relative imports appear here, so the file exports
for `trust_remote_code`.

The model's inputs stay in physical units (linear power, metres from the base station, frames in [-1, 1]), so the
normalisation statistics live in the model config, where the encoders apply them and an exported graph carries them;
`fit_normalization` fits them on a training split and returns the config to train with.
"""

import copy

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, FeatureExtractionMixin, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from .configuration_wmlm import WMLMConfig
from .geo import latlon_to_enu
from .modeling_wmlm import relative_power_db


class WMLMImageProcessor(BaseImageProcessor):
    """Camera frames (PIL images or HWC uint8 arrays, any size) -> (…, 3, image_size, image_size) floats in [-1, 1].

    A frame given as None (a missing reading) becomes zeros; `WMLMProcessor` marks it absent in `modality_mask`.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 64, resample: int = Image.Resampling.BILINEAR, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.resample = int(resample)

    def frame(self, image) -> np.ndarray:
        if image is None:
            return np.zeros((3, self.image_size, self.image_size), np.float32)
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"frames must be PIL images or HWC uint8 arrays, got {type(image).__name__}")
        resized = image.convert("RGB").resize((self.image_size, self.image_size), self.resample)
        return np.asarray(resized, np.float32).transpose(2, 0, 1) / 127.5 - 1.0  # (3, S, S) in [-1, 1]

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """images: a list (batch) of frames, or of lists of frames (batch, time)."""
        pixels = np.array([[self.frame(i) for i in item] if isinstance(item, (list, tuple)) else self.frame(item)
                           for item in images])
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)


def _float_array(name: str, value, last_dims: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numbers (a list, numpy array or tensor): {error}") from None
    if array.shape[-len(last_dims) :] != last_dims:
        raise ValueError(f"{name} must end in shape {last_dims}, got {array.shape}")
    return array


class WMLMFeatureExtractor(FeatureExtractionMixin):
    """Power vectors, positions and labels -> checked float/long tensors, and the presence mask.

    Positions come as east/north metres from the base station (`gps_position`) or as latitude/longitude
    (`gps_latlon`) with the base station's `bs_latlon`; a missing fix is NaN (or None) and is marked absent.
    """

    model_input_names = ["beam_power", "gps_position", "modality_mask"]

    def __init__(self, num_beams: int = 64, history_len: int = 5, horizon: int = 3,
                 modalities: list[str] | tuple[str, ...] = ("beam", "vision", "gps"), **kwargs):
        super().__init__(**kwargs)
        self.num_beams = num_beams
        self.history_len = history_len
        self.horizon = horizon
        self.modalities = list(modalities)

    def power(self, beam_power) -> np.ndarray:
        power = _float_array("beam_power", beam_power, (self.num_beams,))
        if np.nanmin(power) < 0:
            raise ValueError("beam_power has negative values; linear received power per beam is expected, not dB: "
                             "pass 10 ** (dB / 10)")
        return power

    def positions(self, gps_position=None, gps_latlon=None, bs_latlon=None) -> np.ndarray:
        if gps_latlon is not None:
            if bs_latlon is None:
                raise ValueError("gps_latlon needs bs_latlon, the base station's (lat, lon), to become metres")
            latlon = _float_array("gps_latlon", _nan_for_none(gps_latlon), (2,))
            bs = _float_array("bs_latlon", bs_latlon, (2,))
            bs = bs.reshape(bs.shape[:1] + (1,) * (latlon.ndim - bs.ndim) + (2,)) if bs.ndim > 1 else bs
            return latlon_to_enu(latlon[..., 0], latlon[..., 1], bs[..., 0], bs[..., 1])
        return _float_array("gps_position", _nan_for_none(gps_position), (2,))

    def labels(self, labels, batch_size: int) -> torch.Tensor:
        array = np.asarray(labels)
        if array.dtype.kind in "iu":  # beam indices
            shape = (batch_size, self.horizon)
            dtype = torch.long
            if array.size and (array[array != -100].min(initial=0) < 0 or array.max() >= self.num_beams):
                raise ValueError(f"beam labels must be 0-based indices in [0, {self.num_beams}) or -100, got "
                                 f"[{array.min()}, {array.max()}]; DeepSense CSV labels are 1-based, subtract 1")
        else:  # future power vectors
            shape, dtype = (batch_size, self.horizon, self.num_beams), torch.float32
        if array.shape != shape:
            raise ValueError(f"labels of shape {array.shape} do not fit the model's window: expected {shape} "
                             f"(batch, horizon={self.horizon}{', num_beams' if len(shape) == 3 else ''}); build the "
                             f"dataset with wmlm.data.window_kwargs(config)")
        return torch.as_tensor(array, dtype=dtype)


def _nan_for_none(positions):
    """Nested lists may hold None for a missing fix; numpy wants NaN."""
    if isinstance(positions, (list, tuple)):
        return [_nan_for_none(p) if p is not None else [np.nan, np.nan] for p in positions]
    return positions


class WMLMProcessor(ProcessorMixin):
    """Raw readings -> the keyword arguments of every WMLM model, saved and loaded beside the model.

        processor = WMLMProcessor.from_config(config)
        inputs = processor(beam_power=power, images=frames, gps_latlon=latlon, bs_latlon=bs, labels=beams)
        model(**inputs)

    Batch-first: (batch, time, …) for stage 2, (batch, …) for stage 1. A frame given as None or a NaN position is a
    missing reading, marked False in `modality_mask`, so the model never reads its placeholder.
    """

    def __init__(self, image_processor=None, feature_extractor=None):
        super().__init__(image_processor, feature_extractor)

    @classmethod
    def from_config(cls, config: WMLMConfig) -> "WMLMProcessor":
        vision = config.encoder_configs.get("vision") or {"image_size": 64}
        return cls(WMLMImageProcessor(image_size=vision["image_size"]),
                   WMLMFeatureExtractor(num_beams=config.num_beams, history_len=config.history_len,
                                        horizon=config.horizon, modalities=config.modalities))

    def __call__(self, beam_power=None, images=None, gps_position=None, gps_latlon=None, bs_latlon=None,
                 labels=None, return_tensors: str = "pt") -> BatchFeature:
        if return_tensors != "pt":
            raise ValueError("WMLMProcessor returns PyTorch tensors only (return_tensors='pt')")
        extractor = self.feature_extractor
        modalities = extractor.modalities
        given = {"beam": beam_power is not None, "vision": images is not None,
                 "gps": gps_position is not None or gps_latlon is not None}
        unknown = [m for m, g in given.items() if g and m not in modalities]
        if unknown:
            raise ValueError(f"inputs for {unknown} were given, but the model's modalities are {modalities}")
        if not any(given.values()):
            raise ValueError("give at least one of beam_power, images, gps_position or gps_latlon")
        out, present = {}, {}
        if given["beam"]:
            power = extractor.power(beam_power)
            out["beam_power"], present["beam"] = power, np.isfinite(power).all(-1)
        if given["gps"]:
            position = extractor.positions(gps_position, gps_latlon, bs_latlon)
            out["gps_position"], present["gps"] = np.nan_to_num(position), np.isfinite(position).all(-1)
        if given["vision"]:
            out["pixel_values"] = self.image_processor(images, return_tensors=None)["pixel_values"]
            present["vision"] = _frame_present(images)
        batch_shapes = {name: value.shape[: value.ndim - (3 if name == "pixel_values" else 1)]
                        for name, value in out.items()}
        if len(set(batch_shapes.values())) != 1:
            raise ValueError(f"inputs disagree on their batch (and time) shape: {batch_shapes}")
        batch_shape = next(iter(batch_shapes.values()))
        mask = np.zeros((*batch_shape, len(modalities)), bool)
        for modality, rows in present.items():
            mask[..., modalities.index(modality)] = rows
        features = {name: torch.as_tensor(value, dtype=torch.float32) for name, value in out.items()}
        features["modality_mask"] = torch.as_tensor(mask)
        if labels is not None:
            features["labels"] = extractor.labels(labels, batch_shape[0])
        return BatchFeature(features)

    def fit_normalization(self, config: WMLMConfig, beam_power=None, gps_position=None) -> WMLMConfig:
        """A copy of `config` with the encoders' statistics fitted on training readings.

        beam_power: (N, …, num_beams) linear power; gps_position: (N, …, 2) metres, NaN where missing. Fits the mean
        and standard deviation of power in dB relative to each vector's strongest beam (used by
        power_transform="log_standardize"), and the centre and RMS spread of positions.
        """
        fitted = copy.deepcopy(config)
        if beam_power is not None and "beam" in config.modalities:
            power = self.feature_extractor.power(beam_power).reshape(-1, config.num_beams)
            decibels = relative_power_db(torch.as_tensor(power)).numpy()
            fitted.encoder_configs["beam"].update(power_mean_db=float(decibels.mean()),
                                                  power_std_db=float(decibels.std()))
        if gps_position is not None and "gps" in config.modalities:
            position = self.feature_extractor.positions(gps_position).reshape(-1, 2)
            position = position[np.isfinite(position).all(-1)]
            if len(position):
                center = position.mean(0)
                scale = float(np.sqrt(((position - center) ** 2).sum(-1).mean()))
                fitted.encoder_configs["gps"].update(position_center_m=[float(c) for c in center],
                                                     position_scale_m=max(scale, 1.0))
        fitted.validate()
        return fitted


def _frame_present(images) -> np.ndarray:
    return np.array([[i is not None for i in item] if isinstance(item, (list, tuple)) else item is not None
                     for item in images])


__all__ = ["WMLMFeatureExtractor", "WMLMImageProcessor", "WMLMProcessor"]
