"""Train the segmentation network on pseudo masks (train_seg.masks='make_pseudo') or ground truth ('gt').

python tools/train_seg.py CONFIG [--work-dir DIR] [--resume] [--force] [--cfg-options train_seg.iters=100 ...]
torchrun --nproc_per_node N tools/train_seg.py CONFIG ...   (DDP; train_seg.batch_size is per GPU)
"""

from stages.train_seg import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
