"""Evaluate the trained segmentation network on the validation split: mIoU single-scale and multi-scale + flip,
per-class IoU table, confusion-matrix plot, palette PNG predictions.

python tools/eval_seg.py CONFIG [--work-dir DIR] [--force] [--cfg-options eval_seg.scales=[0.5,1.0,1.5] eval_seg.flip=True]
"""

from stages.eval_seg import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
