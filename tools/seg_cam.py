"""Segmentation-branch predictions (ToCo's decoder, cls_model.seg_head) as CAM-format npz (stage seg_cam).

    python tools/seg_cam.py CONFIG [--work-dir DIR] [--force] [--cfg-options seg_cam.scales=[1.0] seg_cam.split=val]
    python tools/make_pseudo.py CONFIG --cfg-options pseudo.input=seg_cam      # masks from its predictions
"""

from stages.seg_cam import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
