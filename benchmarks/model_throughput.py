"""Training throughput of WMLMForBeamPrediction on this CPU: windows/s, the share of step time spent loading data,
and model FLOP utilisation (MFU) against the fp32 and bf16 matmul peaks measured in the same process.

    python benchmarks/model_throughput.py --presets wmlm-tiny wmlm-small wmlm-base --batch_size 8

Windows come from a digital twin with camera frames, through the DeepSense6G builder, a DataLoader and
`WindowCollator` (the processor resizes frames), as the recipes train. Each preset runs twice: with every modality,
and with power + GPS only (the real DeepSense 1-5 case, no frames). FLOPs are counted by torch's FlopCounterMode on
one real forward + backward; a step is forward, backward and AdamW in fp32.
"""

import tempfile
import time
from dataclasses import dataclass, field

import datasets
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.digital_twin import generate_scenario
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from wmlm.data import WindowCollator, window_kwargs

MODALITY_SETS = {"all": ["beam", "vision", "gps"], "power+GPS": ["beam", "gps"]}


@dataclass
class ThroughputArguments:
    presets: list[str] = field(default_factory=lambda: ["wmlm-tiny", "wmlm-small", "wmlm-base"],
                               metadata={"help": "presets"})
    batch_size: int = field(default=8, metadata={"help": "windows per step"})
    steps: int = field(default=5, metadata={"help": "timed steps after one warm-up step"})


def matmul_peak_flops(dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def train_step(model, optimizer, batch):
    loss = model(**batch).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def measure(preset: str, modalities: list[str], windows: datasets.Dataset, args) -> dict:
    config = WMLMConfig.from_preset(preset, modalities=modalities)
    model = WMLMForBeamPrediction(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = iter(DataLoader(windows, batch_size=args.batch_size, shuffle=True,
                             collate_fn=WindowCollator(WMLMProcessor.from_config(config))))
    batch = next(loader)
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    train_step(model, optimizer, batch)  # warm-up
    loading = stepping = 0.0
    for _ in range(args.steps):
        start = time.perf_counter()
        batch = next(loader)
        loaded = time.perf_counter()
        train_step(model, optimizer, batch)
        loading, stepping = loading + loaded - start, stepping + time.perf_counter() - loaded
    total = loading + stepping
    return {"parameters": model.num_parameters(), "flops": counter.get_total_flops(),
            "windows_per_s": args.steps * args.batch_size / total, "loading_share": loading / total,
            "compute_flops_per_s": counter.get_total_flops() * args.steps / total}


def main(argv=None):
    (args,) = HfArgumentParser(ThroughputArguments).parse_args_into_dataclasses(argv)
    torch.manual_seed(0)
    datasets.disable_progress_bars()
    # A CPU without bf16 instructions runs bf16 matmuls some 30x slower than fp32: a smaller one measures it.
    peaks = {torch.float32: matmul_peak_flops(torch.float32, 2048), torch.bfloat16: matmul_peak_flops(torch.bfloat16,
                                                                                                     512)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peaks measured here: fp32 "
          f"{peaks[torch.float32] / 1e9:.1f} GFLOP/s, bf16 {peaks[torch.bfloat16] / 1e9:.1f} GFLOP/s", flush=True)
    print("| preset | modalities | parameters | batch | GFLOP/step | windows/s | data loading share | "
          "MFU (fp32 peak) | MFU (bf16 peak) |\n|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        generate_scenario(folder, "twin1", num_samples=200, image_size=(160, 90))
        windows = {}
        for preset in args.presets:
            shape = window_kwargs(WMLMConfig.from_preset(preset))
            key = tuple(shape.values())
            if key not in windows:
                windows[key] = load_deepsense6g([f"{folder}/twin1"], "beam_prediction",
                                                cache_dir=f"{folder}/cache", split_fractions=(1.0, 0.0, 0.0),
                                                **shape)["train"]
            for name, modalities in MODALITY_SETS.items():
                r = measure(preset, modalities, windows[key], args)
                print(f"| {preset} | {name} | {r['parameters']:,} | {args.batch_size} | {r['flops'] / 1e9:.2f} | "
                      f"{r['windows_per_s']:.1f} | {r['loading_share']:.0%} | "
                      f"{r['compute_flops_per_s'] / peaks[torch.float32]:.1%} | "
                      f"{r['compute_flops_per_s'] / peaks[torch.bfloat16]:.1%} |", flush=True)


if __name__ == "__main__":
    main()
