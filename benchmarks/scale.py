"""Scale of the WMLM presets: parameters, bf16 weight bytes, and DeepSpeed's own ZeRO-2 / ZeRO-3 per-GPU estimates.

    python benchmarks/scale.py --presets wmlm-small wmlm-base wmlm-2.4b

Models are built on the meta device (no memory, no init), so this runs in seconds for any preset. The ZeRO numbers
are DeepSpeed's estimators (`estimate_zero{2,3}_model_states_mem_needs`, model states only: parameters, gradients
and Adam states, with DeepSpeed's 1.5 buffer factor; activations come on top) for 8 GPUs (1 node) and 64 GPUs
(8 nodes of 8).
"""

from dataclasses import dataclass, field

import torch
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
from transformers import HfArgumentParser

from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction

GIB = 2**30


@dataclass
class ScaleArguments:
    presets: list[str] = field(default_factory=lambda: ["wmlm-small", "wmlm-base", "wmlm-2.4b"],
                               metadata={"help": "WMLMConfig presets"})


def measure(preset: str) -> dict:
    with torch.device("meta"):
        model = WMLMForBeamPrediction(WMLMConfig.from_preset(preset))
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in model.modules())
    row = {"preset": preset, "parameters": total, "bf16_gib": 2 * total / GIB}
    for gpus, nodes in ((8, 1), (64, 8)):
        row[f"zero2_{gpus}"] = estimate_zero2_model_states_mem_needs(total, gpus // nodes, nodes, False)[1] / GIB
        row[f"zero3_{gpus}"] = estimate_zero3_model_states_mem_needs(total, largest, gpus // nodes, nodes, False,
                                                                    False, True)[1] / GIB
    return row


def main():
    (args,) = HfArgumentParser(ScaleArguments).parse_args_into_dataclasses()
    print("| preset | parameters | bf16 weights (GiB) | ZeRO-2 per GPU, 8 / 64 GPUs (GiB) | "
          "ZeRO-3 per GPU, 8 / 64 GPUs (GiB) |\n|---|---|---|---|---|")
    for preset in args.presets:
        r = measure(preset)
        print(f"| {preset} | {r['parameters']:,} | {r['bf16_gib']:.2f} | {r['zero2_8']:.1f} / {r['zero2_64']:.1f} | "
              f"{r['zero3_8']:.1f} / {r['zero3_64']:.1f} |")


if __name__ == "__main__":
    main()
