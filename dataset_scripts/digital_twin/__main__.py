"""`python -m dataset_scripts.digital_twin --output_dir data/twin --presets twin1 twin2 --num_samples 400`"""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from .twin import DEMO_SITES, PRESETS, generate_scenarios


@dataclass
class TwinArguments:
    output_dir: str = field(metadata={"help": "folder that receives one DeepSense-layout folder per scenario"})
    presets: list[str] = field(default_factory=lambda: list(DEMO_SITES),
                               metadata={"help": f"sites, from {list(PRESETS)}"})
    num_samples: int = field(default=300, metadata={"help": "samples per scenario"})
    seed: int = field(default=0, metadata={"help": "generation is deterministic in the seed"})
    image_width: int = field(default=160, metadata={"help": "camera frame width in pixels"})
    image_height: int = field(default=90, metadata={"help": "camera frame height in pixels"})

    def __post_init__(self):
        unknown = sorted(set(self.presets) - set(PRESETS))
        if unknown:
            raise ValueError(f"unknown presets {unknown}; choose from {list(PRESETS)}")


def main(argv=None):
    (args,) = HfArgumentParser(TwinArguments).parse_args_into_dataclasses(argv)
    folders = generate_scenarios(args.output_dir, args.presets, num_samples=args.num_samples, seed=args.seed,
                                 image_size=(args.image_width, args.image_height))
    for folder in folders:
        print(f"wrote {folder} ({args.num_samples} samples)")


if __name__ == "__main__":
    main()
