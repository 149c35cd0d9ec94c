"""Training-step throughput of WMLMForBeamPrediction on this machine's CPU, as a fraction of its matmul peak.

    python benchmarks/model_throughput.py --presets wmlm-tiny wmlm-small --batch_size 8

FLOPs are counted by torch's FlopCounterMode on one real forward + backward pass; the peak is the best float32 matmul
rate torch reaches in the same process, so model FLOP utilisation (MFU) is a ratio measured in one run.
"""

import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser

from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction


@dataclass
class ThroughputArguments:
    presets: list[str] = field(default_factory=lambda: ["wmlm-tiny", "wmlm-small"], metadata={"help": "presets"})
    batch_size: int = field(default=8, metadata={"help": "windows per step"})
    steps: int = field(default=5, metadata={"help": "timed steps after one warm-up step"})


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def random_batch(config: WMLMConfig, batch_size: int) -> dict[str, torch.Tensor]:
    vision = config.encoder_configs["vision"]
    steps = config.history_len
    return {
        "beam_power": torch.rand(batch_size, steps, config.num_beams),
        "pixel_values": torch.randn(batch_size, steps, 3, vision["image_size"], vision["image_size"]),
        "gps_position": 50 * torch.randn(batch_size, steps, 2),
        "labels": torch.randint(0, config.num_beams, (batch_size, config.horizon)),
    }


def train_step(model, optimizer, batch):
    loss = model(**batch).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main():
    (args,) = HfArgumentParser(ThroughputArguments).parse_args_into_dataclasses()
    torch.manual_seed(0)
    peak = matmul_peak_flops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print("| preset | parameters | batch | GFLOP/step | s/step | windows/s | MFU |\n|---|---|---|---|---|---|---|")
    for preset in args.presets:
        config = WMLMConfig.from_preset(preset)
        model = WMLMForBeamPrediction(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = random_batch(config, args.batch_size)
        with FlopCounterMode(display=False) as counter:
            model(**batch).loss.backward()
        flops = counter.get_total_flops()
        train_step(model, optimizer, batch)  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, optimizer, batch)
        seconds = (time.perf_counter() - start) / args.steps
        print(f"| {preset} | {model.num_parameters():,} | {args.batch_size} | {flops / 1e9:.2f} | {seconds:.3f} | "
              f"{args.batch_size / seconds:.1f} | {flops / seconds / peak:.1%} |")


if __name__ == "__main__":
    main()
