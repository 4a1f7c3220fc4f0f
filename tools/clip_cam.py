"""CLIP CAMs (CLIP-ES softmax Grad-CAM or dense patch-text alignment) for every image of data.cam_split.

python tools/clip_cam.py CONFIG [--work-dir DIR] [--force] [--cfg-options clip_cam.pretrained=/path/ViT-B-16.pt ...]
torchrun --nproc_per_node N tools/clip_cam.py CONFIG   # ids sharded by rank
"""

from stages.clip_cam import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
