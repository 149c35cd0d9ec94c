"""Inference latency of WMLMForBeamPrediction per call: eager, torch.compile and ONNX Runtime, p50 / p99.

    python benchmarks/latency.py --presets wmlm-small wmlm-base --batch_sizes 1 64

One call predicts the best beam for each of the next 3 steps from 5 past steps. DeepSense samples a pass about every
100 ms, so that is the budget of a beam update. Inputs come through `WMLMProcessor` (wmlm.export.example_inputs);
the modalities are power + GPS, the real-data case, unless --modalities says otherwise. Each runtime is timed in the
same process on the same inputs, after warm-up calls (compilation is reported apart), for at least --min_calls calls
and --min_seconds.
"""

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from transformers import HfArgumentParser

from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from wmlm.export import example_inputs, export_onnx

BEAM_UPDATE_INTERVAL_MS = 100.0


@dataclass
class LatencyArguments:
    presets: list[str] = field(default_factory=lambda: ["wmlm-small", "wmlm-base"], metadata={"help": "presets"})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64], metadata={"help": "windows per call"})
    modalities: list[str] = field(default_factory=lambda: ["beam", "gps"], metadata={"help": "model modalities"})
    runtimes: list[str] = field(default_factory=lambda: ["eager", "compile", "onnxruntime"], metadata={
        "help": "eager, compile (torch.compile, default mode) and onnxruntime (CPU provider, from wmlm.export)"})
    min_calls: int = field(default=50, metadata={"help": "timed calls at least"})
    min_seconds: float = field(default=3.0, metadata={"help": "timed seconds at least"})


def call_times_ms(call, min_calls: int, min_seconds: float) -> np.ndarray:
    for _ in range(3):  # warm-up: allocator, kernels' first-call paths
        call()
    times, started = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - started < min_seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * np.array(times)


def make_call(runtime: str, model, processor, inputs: dict, folder: Path):
    """A no-argument call of the model on `inputs` through `runtime`, built and warmed (compiled, exported)."""
    if runtime == "eager":
        def call():
            with torch.inference_mode():
                return model(**inputs).logits
    elif runtime == "compile":
        compiled = torch.compile(model)

        def call():
            with torch.inference_mode():
                return compiled(**inputs).logits
    elif runtime == "onnxruntime":
        path = export_onnx(model, folder / f"{model.config.hidden_size}.onnx", processor)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {name: value.numpy() for name, value in inputs.items()}

        def call():
            return session.run(None, feed)[0]
    else:
        raise ValueError(f"unknown runtime {runtime!r}: eager, compile or onnxruntime")
    call()  # compiles on the first call
    return call


def main(argv=None):
    (args,) = HfArgumentParser(LatencyArguments).parse_args_into_dataclasses(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, "
          f"modalities {' + '.join(args.modalities)}; budget: the {BEAM_UPDATE_INTERVAL_MS:.0f} ms beam-update "
          "interval")
    print("| preset | parameters | batch | runtime | setup s | p50 ms | p99 ms | p50 ms per window | "
          "p99 within budget |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for preset in args.presets:
            config = WMLMConfig.from_preset(preset, modalities=args.modalities)
            model = WMLMForBeamPrediction(config).eval()
            processor = WMLMProcessor.from_config(config)
            for batch in args.batch_sizes:
                inputs = example_inputs(processor, batch)
                reference = None
                for runtime in args.runtimes:
                    started = time.perf_counter()
                    call = make_call(runtime, model, processor, inputs, Path(folder))
                    setup = time.perf_counter() - started
                    logits = torch.as_tensor(call())
                    reference = logits if reference is None else reference
                    torch.testing.assert_close(logits, reference, atol=1e-3, rtol=1e-3)  # the same model each time
                    times = call_times_ms(call, args.min_calls, args.min_seconds)
                    p50, p99 = np.percentile(times, [50, 99])
                    print(f"| {preset} | {model.num_parameters():,} | {batch} | {runtime} | {setup:.1f} | {p50:.2f} "
                          f"| {p99:.2f} | {p50 / batch:.3f} | {'yes' if p99 < BEAM_UPDATE_INTERVAL_MS else 'no'} |",
                          flush=True)


if __name__ == "__main__":
    main()
