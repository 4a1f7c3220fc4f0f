"""Make pseudo masks (palette PNG, 255 = ignore) from a CAM stage (stages/make_pseudo.py).

    python tools/make_pseudo.py CONFIG [--work-dir DIR] [--force] [--cfg-options pseudo.use_crf=True pseudo.input=crf]
"""

from stages.make_pseudo import run
from wsss.cli import run_stage_cli

if __name__ == "__main__":
    raise SystemExit(run_stage_cli(run, __doc__))
