"""Multi-scale + flip CAMs for every image of a split (stage make_cam), resumable per image.

    python tools/make_cam.py CONFIG [--work-dir DIR] [--force] [--cfg-options cam.scales=[1.0,0.5] cam.batch_size=4]
    torchrun --nproc_per_node 2 tools/make_cam.py CONFIG ...          # each rank takes its share of the ids
"""

from stages.make_cam import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
