"""Run the chain of stages a config declares (``pipeline = [...]``), skipping complete ones.

    python tools/run_pipeline.py configs/synthetic/demo.py [--from make_cam] [--until make_pseudo] [--resume]
                                 [--force] [--redo STAGE ...]

``--force`` re-makes only the stages whose identity changed (config values, input stages, data) and says for
each what it removes; complete stages that did not change are kept. ``--redo STAGE`` re-makes the named stages
even when unchanged (and, through their changed fingerprints, the stages after them when ``--force`` is given).
"""

from __future__ import annotations

import sys

from wsss.cli import stage_parser, user_errors
from wsss.pipeline_state import format_summary


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--from", dest="start", default=None, help="first stage to run (folder name)")
    parser.add_argument("--until", default=None, help="last stage to run (folder name)")
    parser.add_argument("--redo", nargs="+", default=(), metavar="STAGE",
                        help="re-make these stages even if complete and unchanged")
    args = parser.parse_args(argv)
    fast = _nothing_to_do(args)
    if fast is not None:
        print(format_summary(fast))
        return 0
    results = []

    def body(cfg):
        from wsss.pipeline import run_pipeline
        results.extend(run_pipeline(cfg, args.start, args.until, resume=args.resume,
                                    force="changed" if args.force else False, redo=args.redo))

    rc = user_errors(body, args)
    if rc == 0:
        from wsss import dist
        if dist.is_main():
            print(format_summary(results))
    return rc


def _nothing_to_do(args) -> list | None:
    """The summary of a re-run that cannot change anything (wsss/pipeline_state.py), without importing torch."""
    import os

    if args.force or args.redo or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    try:
        from wsss.config import load_config
        from wsss.pipeline_state import nothing_to_do
        cfg = load_config(args.config, args.cfg_options, args.work_dir)
        found = nothing_to_do(cfg, args.start, args.until)
    except Exception:  # any doubt: the full path decides, and reports errors properly
        return None
    if found is not None:
        print(f"{cfg.work_dir}: nothing changed since the last complete run (config, data files, stage folders); "
              f"every stage is complete", file=sys.stderr)
    return found


if __name__ == "__main__":
    sys.exit(main())
