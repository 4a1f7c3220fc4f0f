"""Biased-object removal (after MARS) on the CAMs of any CAM stage (stages/debias.py); output in the CAM format.

    python tools/debias.py CONFIG [--work-dir DIR] [--force] [--cfg-options debias.input=make_cam debias.clusters=16]
"""

from stages.debias import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
