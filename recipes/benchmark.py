"""Evaluation script; the code lives in `wmlm.benchmark` so that the installed `wmlm benchmark` runs the same thing.

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/benchmark.py \
        recipes/wmlm-small/benchmark/config.yaml [--key value ...]

WMLM trains under the preset's adapt recipes (config_full.yaml, config_lora.yaml); with several processes its
Trainer runs data-parallel, the baselines run on every rank alike and only the main process writes.
"""

from wmlm.benchmark import main

if __name__ == "__main__":
    main()
