"""Scale of the WMLM presets: parameters, bf16 weight bytes, and DeepSpeed's own ZeRO-2 / ZeRO-3 per-GPU estimates.

    python benchmarks/scale.py --presets wmlm-small wmlm-base wmlm-2.4b

Models are built on the meta device (no memory, no init), so this runs in seconds for any preset. The ZeRO numbers
are DeepSpeed's estimators (`estimate_zero{2,3}_model_states_mem_needs`, model states only: parameters, gradients
and Adam states, with DeepSpeed's 1.5 buffer factor; activations come on top) for 8 GPUs (1 node) and 64 GPUs
(8 nodes of 8).

`--cpu_runs forward lora_step` also builds one preset (`--cpu_preset`, default wmlm-2.4b) for real, in each of
`--cpu_dtypes`, and times on this CPU one forward at batch 1 and one LoRA training step (rank 8 on the backbone,
gradient checkpointing, AdamW), each in a fresh process so its peak RSS is its own. The modalities are power + GPS
(`--cpu_modalities`): with the camera, the ViT-L/14 over 5 frames is most of the FLOPs.
"""

import multiprocessing
import resource
import time
from dataclasses import dataclass, field

import torch
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
from peft import LoraConfig, get_peft_model
from transformers import HfArgumentParser

from modeling_wmlm import BACKBONE_LORA_TARGET_MODULES, WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from wmlm.export import example_inputs

GIB = 2**30


@dataclass
class ScaleArguments:
    presets: list[str] = field(default_factory=lambda: ["wmlm-small", "wmlm-base", "wmlm-2.4b"],
                               metadata={"help": "WMLMConfig presets"})
    cpu_runs: list[str] = field(default_factory=list, metadata={
        "help": "forward and/or lora_step: measured on this CPU in bf16 at batch 1, each in a fresh process"})
    cpu_preset: str = field(default="wmlm-2.4b", metadata={"help": "the preset of --cpu_runs"})
    cpu_dtypes: list[str] = field(default_factory=lambda: ["bfloat16", "float32"], metadata={
        "help": "weight dtypes of --cpu_runs"})
    cpu_modalities: list[str] = field(default_factory=lambda: ["beam", "gps"], metadata={
        "help": "modalities of --cpu_runs"})


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


def cpu_run(preset: str, kind: str, dtype: str, modalities: list[str]) -> dict:
    """Build `preset` in `dtype`, then one forward without gradients or one LoRA training step at batch 1; -> seconds
    and this process's peak RSS."""
    torch.manual_seed(0)
    config = WMLMConfig.from_preset(preset, modalities=modalities)
    started = time.perf_counter()
    torch.set_default_dtype(getattr(torch, dtype))  # initialised in dtype: no fp32 copy beside a bf16 model
    model = WMLMForBeamPrediction(config)
    torch.set_default_dtype(torch.float32)
    row = {"build_s": time.perf_counter() - started}
    inputs = example_inputs(WMLMProcessor.from_config(config), batch_size=1)
    started = time.perf_counter()
    if kind == "forward":
        with torch.inference_mode():
            model.eval()(**inputs)
    elif kind == "lora_step":
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(model, LoraConfig(r=8, target_modules=BACKBONE_LORA_TARGET_MODULES,
                                                 modules_to_save=["beam_head"])).train()
        row["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model(**inputs, labels=torch.zeros(1, config.horizon, dtype=torch.long)).loss.backward()
        optimizer.step()
    else:
        raise ValueError(f"unknown cpu run {kind!r}: forward or lora_step")
    row["seconds"] = time.perf_counter() - started
    row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return row


def main():
    (args,) = HfArgumentParser(ScaleArguments).parse_args_into_dataclasses()
    print("| preset | parameters | bf16 weights (GiB) | ZeRO-2 per GPU, 8 / 64 GPUs (GiB) | "
          "ZeRO-3 per GPU, 8 / 64 GPUs (GiB) |\n|---|---|---|---|---|")
    for preset in args.presets:
        r = measure(preset)
        print(f"| {preset} | {r['parameters']:,} | {r['bf16_gib']:.2f} | {r['zero2_8']:.1f} / {r['zero2_64']:.1f} | "
              f"{r['zero3_8']:.1f} / {r['zero3_64']:.1f} |")
    if args.cpu_runs:
        print(f"\n{args.cpu_preset} on this CPU, batch 1, {' + '.join(args.cpu_modalities)} "
              f"({torch.get_num_threads()} threads, torch {torch.__version__}):\n\n"
              "| run | dtype | build s | seconds | peak RSS (GiB) | trainable parameters |\n|---|---|---|---|---|---|",
              flush=True)
    for dtype in args.cpu_dtypes:
        for kind in args.cpu_runs:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                r = pool.apply(cpu_run, (args.cpu_preset, kind, dtype, args.cpu_modalities))
            trainable = f"{r['trainable']:,}" if "trainable" in r else "-"
            print(f"| {kind} | {dtype} | {r['build_s']:.0f} | {r['seconds']:.1f} | {r['peak_rss_gib']:.1f} | "
                  f"{trainable} |", flush=True)


if __name__ == "__main__":
    main()
