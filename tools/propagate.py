"""Refine CAMs by a random walk with learned affinities or by PAR (stages/propagate.py); CAM-format output.

    python tools/propagate.py CONFIG [--work-dir DIR] [--force] [--cfg-options propagate.beta=10 propagate.t=256]
    python tools/propagate.py CONFIG --cfg-options propagate.method=par propagate.name=propagate_par
    torchrun --nproc_per_node N tools/propagate.py CONFIG ...
"""

from stages.propagate import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
