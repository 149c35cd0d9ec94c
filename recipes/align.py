"""Stage script; the code lives in `wmlm.align` so that the installed `wmlm align` command runs the same thing.

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/align.py RECIPE.yaml [--key value ...]
"""

from wmlm.align import main
from wmlm.training import finish_rank

if __name__ == "__main__":
    main()
    finish_rank()
