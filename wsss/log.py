"""Logging set-up shared by every tool: one format, rank-aware, optional log file in the stage folder."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from wsss import dist

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO", log_file: str | Path | None = None) -> None:
    """Configure the root logger; non-zero ranks only log warnings so output is not repeated N times."""
    root = logging.getLogger()
    lvl = logging.getLevelName(level) if isinstance(level, str) else level
    root.setLevel(lvl if dist.rank() == 0 else logging.WARNING)
    if not any(getattr(h, "_wsss", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        h._wsss = True  # type: ignore[attr-defined]
        root.addHandler(h)
    if log_file is not None and dist.rank() == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    for noisy in ("PIL", "matplotlib", "urllib3", "timm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def log_to(path: str | Path) -> Iterator[None]:
    """Copy the log into ``path`` (a stage's ``train.log``) while the block runs; rank 0 only."""
    if not dist.is_main():
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
