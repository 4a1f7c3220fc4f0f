"""The command line every stage tool shares.

``python tools/<stage>.py CONFIG [--work-dir DIR] [--resume] [--force] [--cfg-options k=v ...]``.
User errors (:class:`wsss.errors.WSSSError`) end as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Any, Callable, Sequence

from wsss.config import Config, DictAction, load_config
from wsss.errors import WSSSError


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The shared argument parser; tools may add their own options before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("config", help="mmengine python config (configs/...)")
    p.add_argument("--work-dir", default=None, help="artifact root (default: config's work_dir)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training stage from last.pth")
    p.add_argument("--force", action="store_true",
                   help="overwrite artifacts made with another config (a stage tool: re-make the stage)")
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


def user_errors(body: Callable[[Config], Any], args: argparse.Namespace) -> int:
    """Set up distributed + logging, load the config and run ``body(cfg)``; user errors end as one line.

    Exit codes: 0 done (or the stage does not apply to the data: one line says why), 2 a user error (one line
    on stderr, no traceback), 130 interrupted (Ctrl-C / SIGTERM: what was written so far is complete). Locks
    this process holds on stage folders are released in every case.
    """
    import signal

    from wsss import dist  # imports torch: only once there is work to do
    from wsss.artifacts import release_locks
    from wsss.errors import StageSkipped
    from wsss.log import setup_logging

    def _terminate(signum, frame):  # SIGTERM (a scheduler, kill): unwind like Ctrl-C, so pools stop and locks go
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _terminate)
    log = logging.getLogger("wsss")
    try:
        cfg = config_from_args(args)  # first: it sets the process-group timeout (dist_timeout_min)
        dist.init_from_env(cfg.get("dist_timeout_min"))  # before logging, so non-zero ranks log warnings only
        setup_logging(args.log_level)
        body(cfg)
    except StageSkipped as e:
        log.warning("%s", e)
        return 0
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted; artifacts written so far are complete, re-run to resume")
        return 130
    except OSError as e:
        from wsss.artifacts import write_error
        err = write_error(getattr(e, "filename", None) or "?", e)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        release_locks()
        dist.cleanup()
    return 0


def run_stage_cli(run: Callable[..., Any], description: str, argv: Sequence[str] | None = None,
                  parser: argparse.ArgumentParser | None = None) -> int:
    """Parse the shared CLI, validate the config, run ``run(cfg, resume=..., force=...)``; user errors are one
    line (see :func:`user_errors`). ``--force`` re-makes the stage even when it is complete and unchanged."""
    parser = parser or stage_parser(description)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in vars(args).items()
             if k not in {"config", "work_dir", "resume", "force", "cfg_options", "log_level"}}

    def body(cfg: Config) -> None:
        module = sys.modules.get(getattr(run, "__module__", ""), None)
        if module is not None and hasattr(module, "STAGE"):
            from wsss.pipeline import validate_config
            validate_config(cfg, [(module, cfg)])
        run(cfg, resume=args.resume, force=args.force, **extra)

    return user_errors(body, args)
