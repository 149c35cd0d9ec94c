"""Export a stage-2 WMLM (beam prediction or power forecast) to ONNX with a dynamic batch dimension.

    from wmlm.export import export_onnx
    export_onnx(model, "wmlm-beam.onnx")        # inputs: beam_power, [pixel_values,] gps_position, modality_mask

The graph comes from `torch.export` (every row is encoded and masked, so no shape depends on the data). The value
checks of the eager model (NaN, negative power, pixel range) are not in the graph: feed it what `WMLMProcessor`
produces.
"""

from pathlib import Path

import torch

from modeling_wmlm import WMLMForBeamPrediction, WMLMForPowerForecast, WMLMProcessor

OUTPUT_NAMES = {WMLMForBeamPrediction: "logits", WMLMForPowerForecast: "predicted_power"}


def example_inputs(processor: WMLMProcessor, batch_size: int = 2) -> dict[str, torch.Tensor]:
    """Valid inputs of every configured modality, through the processor, to trace the graph with."""
    extractor = processor.feature_extractor
    steps = extractor.history_len
    raw = {"beam_power": torch.rand(batch_size, steps, extractor.num_beams).tolist()}
    if "gps" in extractor.modalities:
        raw["gps_position"] = (50 * torch.randn(batch_size, steps, 2)).tolist()
    if "vision" in extractor.modalities:
        raw["images"] = [[None] * steps for _ in range(batch_size)]
    inputs = dict(processor(**raw))
    if "pixel_values" in inputs:
        inputs["modality_mask"][..., extractor.modalities.index("vision")] = True  # zeros are valid frames too
    return inputs


def export_onnx(model: WMLMForBeamPrediction | WMLMForPowerForecast, path: str | Path,
                processor: WMLMProcessor | None = None) -> Path:
    """Write `path` (ONNX, opset of the installed torch exporter); batch size is dynamic, history length fixed."""
    processor = processor or WMLMProcessor.from_config(model.config)
    inputs = example_inputs(processor)
    batch = torch.export.Dim("batch", min=1, max=4096)
    model = model.eval()
    torch.onnx.export(model, (), kwargs=inputs, f=str(path), dynamo=True, input_names=list(inputs),
                      output_names=[OUTPUT_NAMES[type(model)]], dynamic_shapes={k: {0: batch} for k in inputs},
                      verbose=False)
    return Path(path)
