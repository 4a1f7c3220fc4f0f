"""Train the affinity network (AffinityNet) on confident CAM seeds (stages/train_aff.py).

    python tools/train_aff.py CONFIG [--work-dir DIR] [--resume] [--force] \
        [--cfg-options train_aff.input=make_cam train_aff.iters=500 aff_model.backbone=resnet18]
    torchrun --nproc_per_node N tools/train_aff.py CONFIG ...
"""

from stages.train_aff import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
