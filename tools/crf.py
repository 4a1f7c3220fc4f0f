"""Dense-CRF-refine the CAMs of a CAM stage (stages/crf.py); output in the CAM format.

    python tools/crf.py CONFIG [--work-dir DIR] [--force] [--cfg-options crf.input=propagate crf.num_workers=4]
"""

from stages.crf import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
