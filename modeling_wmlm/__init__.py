"""wmlm: Hugging Face-native wireless-native multimodal large models.

Importing the package registers WMLM with the transformers auto classes, so `AutoModel.from_pretrained(path)` works
without `trust_remote_code`; saved folders also carry the modeling files for `trust_remote_code=True` elsewhere.
"""

import transformers

from . import modeling_wmlm
from .configuration_wmlm import AUTO_MAP, PRESETS, SUPPORTED_MODALITIES, WMLMConfig
from .modeling_wmlm import (
    WMLMForBeamPrediction,
    WMLMForContrastiveAlignment,
    WMLMForPowerForecast,
    WMLMModel,
    WMLMPreTrainedModel,
)

transformers.AutoConfig.register(WMLMConfig.model_type, WMLMConfig)
WMLMConfig.register_for_auto_class()
for _auto_class, _target in AUTO_MAP.items():
    if _auto_class == "AutoConfig":
        continue
    _model_class = getattr(modeling_wmlm, _target.split(".")[-1])
    getattr(transformers, _auto_class).register(WMLMConfig, _model_class)
    _model_class.register_for_auto_class(_auto_class)

__all__ = [
    "PRESETS",
    "SUPPORTED_MODALITIES",
    "WMLMConfig",
    "WMLMForBeamPrediction",
    "WMLMForContrastiveAlignment",
    "WMLMForPowerForecast",
    "WMLMModel",
    "WMLMPreTrainedModel",
]
