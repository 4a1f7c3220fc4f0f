"""Train the multi-label CAM classifier (stage train_cls).

    python tools/train_cls.py CONFIG [--work-dir DIR] [--resume] [--force] [--cfg-options train_cls.iters=100 ...]
    torchrun --nproc_per_node 2 tools/train_cls.py CONFIG ...        # DDP (NCCL on GPUs, gloo on CPU)
"""

from stages.train_cls import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
