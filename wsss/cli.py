"""The command line every stage tool shares.

``python tools/<stage>.py CONFIG [--work-dir DIR] [--resume] [--force] [--cfg-options k=v ...]``.
User errors (:class:`wsss.errors.WSSSError`) end as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Sequence

from wsss import dist
from wsss.config import Config, DictAction, load_config
from wsss.errors import WSSSError
from wsss.log import setup_logging


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The shared argument parser; tools may add their own options before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("config", help="mmengine python config (configs/...)")
    p.add_argument("--work-dir", default=None, help="artifact root (default: config's work_dir)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training stage from last.pth")
    p.add_argument("--force", action="store_true", help="overwrite artifacts made with another config")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="override config keys, e.g. cam.scales=[1.0,0.5] train_cls.iters=100")
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config; a config's ``ops_backend`` (e.g. 'cpp' for the compiled CPU affinity ops) becomes
    ``WSSS_OPS`` unless the user set that variable."""
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    if cfg.get("ops_backend") and "WSSS_OPS" not in os.environ:
        os.environ["WSSS_OPS"] = str(cfg.ops_backend)
    return cfg


def run_stage_cli(run: Callable[..., Any], description: str, argv: Sequence[str] | None = None,
                  parser: argparse.ArgumentParser | None = None) -> int:
    """Parse the shared CLI, run ``run(cfg, resume=..., force=...)`` and turn user errors into one line."""
    parser = parser or stage_parser(description)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        dist.init_from_env(cfg.get("dist_timeout_min"))  # before logging, so non-zero ranks log warnings only
        setup_logging(args.log_level)
        extra = {k: v for k, v in vars(args).items()
                 if k not in {"config", "work_dir", "resume", "force", "cfg_options", "log_level"}}
        run(cfg, resume=args.resume, force=args.force, **extra)
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted; artifacts written so far are complete, re-run to resume")
        return 130
    finally:
        dist.cleanup()
    return 0
