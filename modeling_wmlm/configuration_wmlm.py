"""WMLM configuration: every hyperparameter of the encoders, the backbone and the heads, plus the named presets."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

SUPPORTED_MODALITIES = ("beam", "vision", "gps")
# Sensors that DeepSense 6G records but that have no encoder yet; naming one gives a clear error, not a silent drop.
PLANNED_MODALITIES = ("lidar", "radar")
ANCHORS = (*SUPPORTED_MODALITIES, "joint")
# How the beam encoder reads a power vector, always relative to its strongest beam (see WMLMBeamEncoder.normalise):
# "log_minmax" dB rescaled by the vector's own span (scale-free), "log_standardize" dB standardised with statistics
# fitted on the training split, "log" dB clipped at a fixed floor, "normalize" linear power over the maximum.
POWER_TRANSFORMS = ("log_minmax", "log_standardize", "log", "normalize")

# Every saved config names every class, so any head loads from any checkpoint, with or without this package
# (`trust_remote_code=True`). Beam prediction and power forecasting borrow the closest existing auto classes.
AUTO_MAP = {
    "AutoConfig": "configuration_wmlm.WMLMConfig",
    "AutoModel": "modeling_wmlm.WMLMModel",
    "AutoModelForPreTraining": "modeling_wmlm.WMLMForContrastiveAlignment",
    "AutoModelForSequenceClassification": "modeling_wmlm.WMLMForBeamPrediction",
    "AutoModelForTimeSeriesPrediction": "modeling_wmlm.WMLMForPowerForecast",
}

# Per-modality encoder defaults; a user dict only overrides the keys it names.
DEFAULT_ENCODER_CONFIGS = {
    "beam": {
        "hidden_size": 256,
        "num_layers": 2,
        "power_transform": "log_minmax",
        "log_floor_db": -40.0,  # "log" only
        "power_mean_db": None,  # "log_standardize" only: fitted by WMLMProcessor.fit_normalization
        "power_std_db": None,
    },
    "vision": {
        "image_size": 64,
        "patch_size": 16,
        "num_channels": 3,
        "hidden_size": 256,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 1024,
    },
    # Positions are read as (east/north - center) / scale: by default the base station's frame at the size of a
    # DeepSense site. Centring and scaling on a training split transferred worse to other sites (BENCHMARKS.md);
    # WMLMProcessor.fit_normalization(..., gps_position=...) still fits them for a single-site model.
    "gps": {"hidden_size": 256, "num_layers": 2, "position_center_m": [0.0, 0.0], "position_scale_m": 100.0,
            "num_frequencies": 8},
}

# The one place presets live. Values override the WMLMConfig defaults; `encoder_configs` merges per modality.
PRESETS = {
    "wmlm-tiny": {
        "projection_dim": 16,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "encoder_configs": {
            "beam": {"hidden_size": 32},
            "vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                       "intermediate_size": 64},
            "gps": {"hidden_size": 32, "num_frequencies": 4},
        },
    },
    "wmlm-small": {
        "projection_dim": 128,
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 688,
        "encoder_configs": {
            "beam": {"hidden_size": 256},
            "vision": {"image_size": 64, "patch_size": 8, "hidden_size": 192, "num_layers": 4, "num_heads": 3,
                       "intermediate_size": 768},
            "gps": {"hidden_size": 256},
        },
    },
    "wmlm-base": {
        "projection_dim": 512,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "encoder_configs": {
            "beam": {"hidden_size": 768, "num_layers": 3},
            "vision": {"image_size": 224, "patch_size": 16, "hidden_size": 768, "num_layers": 12, "num_heads": 12,
                       "intermediate_size": 3072},
            "gps": {"hidden_size": 768, "num_layers": 3},
        },
    },
    "wmlm-2.4b": {
        "projection_dim": 1024,
        "hidden_size": 2560,
        "num_hidden_layers": 27,
        "num_attention_heads": 20,
        "intermediate_size": 6912,
        "encoder_configs": {
            "beam": {"hidden_size": 1024, "num_layers": 4},
            "vision": {"image_size": 224, "patch_size": 14, "hidden_size": 1024, "num_layers": 24, "num_heads": 16,
                       "intermediate_size": 4096},
            "gps": {"hidden_size": 1024, "num_layers": 4},
        },
    },
}


def _merge_encoder_configs(modalities, overrides):
    overrides = overrides or {}
    unknown = set(overrides) - set(modalities)
    if unknown:
        raise ValueError(f"encoder_configs names {sorted(unknown)}, which are not in modalities={list(modalities)}")
    merged = {}
    for modality in modalities:
        defaults = DEFAULT_ENCODER_CONFIGS.get(modality, {})
        bad_keys = set(overrides.get(modality, {})) - set(defaults)
        if bad_keys:
            raise ValueError(f"encoder_configs[{modality!r}] has unknown keys {sorted(bad_keys)}; "
                             f"valid keys are {sorted(defaults)}")
        merged[modality] = {**defaults, **overrides.get(modality, {})}
    return merged


@strict
class WMLMConfig(PreTrainedConfig):
    r"""
    Configuration of a wireless-native multimodal large model (WMLM).

    Radio:
        num_beams (`int`, 64): size of the receive beam codebook, i.e. the length of a power vector.
        num_antennas (`int`, 16): elements of the base-station uniform linear array.
        carrier_frequency_ghz (`float`, 60.0): carrier frequency of the mmWave link.
    Modalities (stage 1):
        modalities (`list[str]`): sensors the model encodes, a subset of `SUPPORTED_MODALITIES`.
        encoder_configs (`dict[str, dict]`): per-modality encoder settings, merged over `DEFAULT_ENCODER_CONFIGS`.
        anchor_modality (`str`, "beam"): modality every other one is contrasted against, or "joint" for all pairs.
        projection_dim (`int`): size of the shared embedding space.
        logit_scale_init_value (`float`): initial log inverse temperature of the InfoNCE loss (CLIP's log(1/0.07)).
    Backbone (stage 2):
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act, rms_norm_eps,
        hidden_dropout, attention_dropout, initializer_range: the GPT-style causal transformer over time steps.
        history_len (`int`, 5): past sensing steps given to the model.
        horizon (`int`, 3): future steps predicted.
    Heads:
        beam_label_smoothing (`float`, 0.0): label mass moved from the true beam to its codebook neighbours.
        beam_smoothing_window (`int`, 1): neighbours on each side of the true beam that share that mass.
        beam_soft_label_temperature_db (`float`, 0.3): when the labels are the measured future power vectors, the
            targets are softmax over beams of (power in dB relative to the best beam) / this temperature: beams
            within a fraction of a dB of the best share the mass, as they share the link quality.
    """

    model_type = "wmlm"

    num_beams: int = 64
    num_antennas: int = 16
    carrier_frequency_ghz: float = 60.0
    modalities: list[str] | tuple[str, ...] = SUPPORTED_MODALITIES
    encoder_configs: dict | None = None
    anchor_modality: str = "beam"
    projection_dim: int = 256
    logit_scale_init_value: float = 2.6592
    hidden_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 1376
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    history_len: int = 5
    horizon: int = 3
    beam_label_smoothing: float = 0.0
    beam_smoothing_window: int = 1
    beam_soft_label_temperature_db: float = 0.3

    def __post_init__(self, **kwargs):
        # The beam head's classes are the codebook's beams: `num_labels` is `num_beams` (see the property below).
        kwargs.pop("id2label", None), kwargs.pop("label2id", None)
        if "num_labels" in kwargs:
            self.num_labels = kwargs.pop("num_labels")
        self.modalities = list(self.modalities)
        self.encoder_configs = _merge_encoder_configs(self.modalities, self.encoder_configs)
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "WMLMConfig":
        """Build a named preset (`wmlm-tiny`, `wmlm-small`, `wmlm-base`, `wmlm-2.4b`), with keyword overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        kwargs = copy.deepcopy(PRESETS[name])
        encoder_overrides = overrides.pop("encoder_configs", {})
        for modality, settings in encoder_overrides.items():
            kwargs["encoder_configs"].setdefault(modality, {}).update(settings)
        modalities = overrides.get("modalities", cls.modalities)
        kwargs["encoder_configs"] = {m: s for m, s in kwargs["encoder_configs"].items() if m in modalities}
        return cls(**{**kwargs, **overrides})

    def modalities_subset(self, modalities) -> "WMLMConfig":
        """A copy that encodes only `modalities` (kept in this config's order) with their encoder settings: a stage-2
        model on power + GPS from a stage-1 checkpoint that also aligned a camera."""
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            raise ValueError(f"modalities {unknown} are not among this config's {self.modalities}")
        values = self.to_dict()
        values["modalities"] = [m for m in self.modalities if m in modalities]
        values["encoder_configs"] = {m: self.encoder_configs[m] for m in values["modalities"]}
        return type(self).from_dict(values)

    @property
    def num_labels(self) -> int:
        """The beam head's classes are the codebook's beams, so `num_labels` is `num_beams` and cannot differ."""
        return self.num_beams

    @num_labels.setter
    def num_labels(self, value: int):
        if value != self.num_beams:
            raise ValueError(f"num_labels={value} but WMLM predicts one of num_beams={self.num_beams} beams: the "
                             f"classes are the codebook; pass num_beams={value} for a {value}-beam codebook")

    @property
    def modality_index(self) -> dict[str, int]:
        return {modality: i for i, modality in enumerate(self.modalities)}

    def validate_architecture(self):
        """Part of `@strict` validation: runs at construction, on load and before save."""
        for name in ("num_beams", "num_antennas", "history_len", "horizon", "projection_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.carrier_frequency_ghz <= 0:
            raise ValueError(f"carrier_frequency_ghz must be positive, got {self.carrier_frequency_ghz}")
        self._validate_modalities()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) is not a multiple of "
                             f"num_attention_heads ({self.num_attention_heads})")
        if not 0.0 <= self.beam_label_smoothing < 1.0:
            raise ValueError(f"beam_label_smoothing must be in [0, 1), got {self.beam_label_smoothing}")
        if not self.beam_soft_label_temperature_db > 0:
            raise ValueError(f"beam_soft_label_temperature_db must be positive, got "
                             f"{self.beam_soft_label_temperature_db}")
        if self.beam_smoothing_window < 0:
            raise ValueError(f"beam_smoothing_window must be >= 0, got {self.beam_smoothing_window}")

    def _validate_modalities(self):
        planned = [m for m in self.modalities if m in PLANNED_MODALITIES]
        if planned:
            raise ValueError(f"modalities {planned} have no encoder yet; supported: {list(SUPPORTED_MODALITIES)}")
        unknown = [m for m in self.modalities if m not in SUPPORTED_MODALITIES]
        if unknown or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct names from {list(SUPPORTED_MODALITIES)}, "
                             f"got {self.modalities}")
        if self.anchor_modality not in ANCHORS:
            raise ValueError(f"anchor_modality must be one of {list(ANCHORS)}, got {self.anchor_modality!r}")
        if self.anchor_modality != "joint" and self.anchor_modality not in self.modalities:
            raise ValueError(f"anchor_modality {self.anchor_modality!r} is not among modalities {self.modalities}")
        if "beam" in self.modalities:
            beam = self.encoder_configs["beam"]
            if beam["power_transform"] not in POWER_TRANSFORMS:
                raise ValueError(f"beam power_transform must be one of {list(POWER_TRANSFORMS)}, "
                                 f"got {beam['power_transform']!r}")
            if beam["power_std_db"] is not None and not beam["power_std_db"] > 0:
                raise ValueError(f"beam power_std_db must be positive, got {beam['power_std_db']}")
        if "gps" in self.modalities:
            gps = self.encoder_configs["gps"]
            if len(gps["position_center_m"]) != 2 or not gps["position_scale_m"] > 0:
                raise ValueError(f"gps position_center_m must be (east, north) metres and position_scale_m positive, "
                                 f"got {gps['position_center_m']} and {gps['position_scale_m']}")
        if "vision" in self.modalities:
            vision = self.encoder_configs["vision"]
            if vision["image_size"] % vision["patch_size"]:
                raise ValueError(f"vision image_size ({vision['image_size']}) is not a multiple of "
                                 f"patch_size ({vision['patch_size']})")
            if vision["hidden_size"] % vision["num_heads"]:
                raise ValueError(f"vision hidden_size ({vision['hidden_size']}) is not a multiple of "
                                 f"num_heads ({vision['num_heads']})")


__all__ = ["AUTO_MAP", "PRESETS", "SUPPORTED_MODALITIES", "WMLMConfig"]
