"""wmlm: Hugging Face-native wireless-native multimodal large models.

Importing the package registers WMLM with the transformers auto classes, so `AutoModel.from_pretrained(path)` works
without `trust_remote_code`; saved folders also carry the modeling files for `trust_remote_code=True` elsewhere.
"""

import transformers

from . import modeling_wmlm
from .configuration_wmlm import AUTO_MAP, PRESETS, SUPPORTED_MODALITIES, WMLMConfig
from .modeling_wmlm import (
    BACKBONE_LORA_TARGET_MODULES,
    WMLMForBeamPrediction,
    WMLMForContrastiveAlignment,
    WMLMForPowerForecast,
    WMLMModel,
    WMLMPreTrainedModel,
)
from .processing_wmlm import WMLMFeatureExtractor, WMLMImageProcessor, WMLMProcessor

transformers.AutoConfig.register(WMLMConfig.model_type, WMLMConfig)
WMLMConfig.register_for_auto_class()
for _auto_class, _target in AUTO_MAP.items():
    if _auto_class == "AutoConfig":
        continue
    _model_class = getattr(modeling_wmlm, _target.split(".")[-1])
    getattr(transformers, _auto_class).register(WMLMConfig, _model_class)
    _model_class.register_for_auto_class(_auto_class)

# The processor saves beside the model and loads with AutoProcessor; its auto_map points at the exported file.
transformers.AutoImageProcessor.register(WMLMConfig, slow_image_processor_class=WMLMImageProcessor)
transformers.AutoFeatureExtractor.register(WMLMConfig, WMLMFeatureExtractor)
transformers.AutoProcessor.register(WMLMConfig, WMLMProcessor)
WMLMImageProcessor.register_for_auto_class("AutoImageProcessor")
WMLMFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
WMLMProcessor.register_for_auto_class("AutoProcessor")

__all__ = [
    "BACKBONE_LORA_TARGET_MODULES",
    "PRESETS",
    "SUPPORTED_MODALITIES",
    "WMLMConfig",
    "WMLMFeatureExtractor",
    "WMLMForBeamPrediction",
    "WMLMForContrastiveAlignment",
    "WMLMForPowerForecast",
    "WMLMImageProcessor",
    "WMLMModel",
    "WMLMPreTrainedModel",
    "WMLMProcessor",
]
