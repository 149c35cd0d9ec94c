"""`wmlm <command> [config.yaml] [--key value ...]`: the recipe stages for users who installed the package.

Each command's arguments are its HfArgumentParser dataclasses (`wmlm <command> --help`); a YAML recipe may come first.
Under `accelerate launch`, run the scripts in recipes/ (or `python -m wmlm.align`, ...) instead.
"""

import sys

from . import adapt, align, benchmark, hub
from .training import finish_rank

COMMANDS = {
    "align": (align.main, "stage 1: contrastive alignment of the modality encoders"),
    "adapt": (adapt.main, "stage 2: full or LoRA adaptation on beam prediction or power forecast"),
    "merge": (adapt.merge, "fold a LoRA adapter into its base model"),
    "benchmark": (benchmark.main, "WMLM against the field's baselines on the same windows, with its metrics"),
    "report": (benchmark.report, "merge benchmark runs split over seeds or machines into one set of tables"),
    "push": (hub.main, "push a checkpoint, adapter or exported dataset with its card to the Hub"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        listing = "\n".join(f"  {name:8s} {help}" for name, (_, help) in COMMANDS.items())
        print(f"usage: wmlm <command> [config.yaml] [--key value ...]\n\ncommands:\n{listing}", file=sys.stderr)
        raise SystemExit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    command, _ = COMMANDS[argv[0]]
    command(argv[1:])
    finish_rank()  # the process's entry point: a launched rank ends here


if __name__ == "__main__":
    main()
