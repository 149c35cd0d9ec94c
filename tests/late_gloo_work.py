"""Run under torchrun by tests/test_recipes.py: a rank whose gloo worker thread still runs Python after `main()`.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/late_gloo_work.py [--finish_rank]

Rank 1 joins the last all-reduce late, so rank 0's worker thread completes it, and runs its Python callback, while
rank 0 is already ending. Without `finish_rank()` that is during Python's finalization and rank 0 aborts
("terminate called without an active exception"), as a stage script's rank did now and then once training was done.
"""

import sys
import time

import torch
import torch.distributed as dist

from wmlm.training import finish_rank

GROUPS = []  # alive to the end, as deepspeed.utils.groups keeps DeepSpeed's groups


def main():
    dist.init_process_group("gloo")
    GROUPS.append(dist.new_group())
    if dist.get_rank() == 1:
        time.sleep(2)
    work = dist.all_reduce(torch.ones(4), group=GROUPS[0], async_op=True)
    work.get_future().then(lambda future: future.value())  # runs on the worker thread, so it takes the GIL


if __name__ == "__main__":
    main()
    if "--finish_rank" in sys.argv:
        finish_rank()
