"""Stage script; the code lives in `wmlm.adapt` so that the installed `wmlm adapt` command runs the same thing.

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/adapt.py RECIPE.yaml [--key value ...]
"""

from wmlm.adapt import main
from wmlm.training import finish_rank

if __name__ == "__main__":
    main()
    finish_rank()
