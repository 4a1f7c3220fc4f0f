"""Run the chain of stages a config declares (``pipeline = [...]``), skipping complete ones.

    python tools/run_pipeline.py configs/synthetic/demo.py [--from make_cam] [--until make_pseudo] [--resume]
"""

from __future__ import annotations

import logging
import sys

from wsss import dist
from wsss.cli import config_from_args, stage_parser
from wsss.errors import WSSSError
from wsss.log import setup_logging
from wsss.pipeline import format_summary, run_pipeline


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--from", dest="start", default=None, help="first stage to run (folder name)")
    parser.add_argument("--until", default=None, help="last stage to run (folder name)")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        dist.init_from_env(cfg.get("dist_timeout_min"))  # before logging, so non-zero ranks log warnings only
        setup_logging(args.log_level)
        results = run_pipeline(cfg, args.start, args.until, resume=args.resume, force=args.force)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        dist.cleanup()
    if dist.is_main():
        logging.getLogger("wsss.pipeline").info("summary\n%s", format_summary(results))
        print(format_summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
