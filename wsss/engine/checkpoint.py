"""``last.pth`` checkpoints holding everything a training stage needs to resume bit-for-bit on CPU."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from wsss.artifacts import atomic_path
from wsss.engine.seed import rng_state, set_rng_state
from wsss.errors import InputError

log = logging.getLogger(__name__)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, iteration: int = 0,
                    extra: dict[str, Any] | None = None) -> None:
    """Atomically save model, optimizer, scheduler, AMP scaler, iteration and RNG states."""
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "iteration": int(iteration),
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, restore_rng: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects; returns the raw dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(path, f"unreadable checkpoint ({type(e).__name__}: {e})") from e
    _unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng and state.get("rng") is not None:
        set_rng_state(state["rng"])
    log.info("resumed from %s at iteration %d", path, state.get("iteration", 0))
    return state


def load_weights(path: str | Path, model: torch.nn.Module, strict: bool = True) -> None:
    """Load only model weights from a wsss checkpoint or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    _unwrap(model).load_state_dict(state, strict=strict)


def check_resumable(last: str | Path, resume: bool) -> None:
    """Refuse to start a training stage from scratch over the checkpoint of an interrupted run.

    Why: a plain re-run used to log "training from scratch" and overwrite ``last.pth`` with an earlier
    iteration, throwing hours of training away. Continuing needs ``--resume``; starting over needs ``--force``
    (which empties the stage folder before this is called, so no checkpoint is left to refuse).
    """
    last = Path(last)
    if resume or not last.is_file():
        return
    try:
        it = torch.load(last, map_location="cpu", weights_only=False).get("iteration", "?")
    except Exception:
        it = "?"
    raise InputError(last, f"an interrupted run stopped at iteration {it}; pass --resume to continue it "
                           f"or --force to start over")
