"""Learning-rate schedules (poly, as DeepLab/IRN/ToCo use, and cosine), with linear warm-up."""

from __future__ import annotations

import math

import torch


def lr_factor(it: int, max_iters: int, kind: str = "poly", power: float = 0.9, warmup_iters: int = 0,
              warmup_ratio: float = 1e-6, min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR at iteration ``it`` (0-based)."""
    if warmup_iters and it < warmup_iters:
        return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters
    progress = min(1.0, max(0, it - warmup_iters) / max(1, max_iters - warmup_iters))
    if kind == "poly":
        f = (1.0 - progress) ** power
    elif kind == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif kind == "constant":
        f = 1.0
    else:
        raise ValueError(f"unknown lr schedule '{kind}' (poly, cosine, constant)")
    return min_ratio + (1.0 - min_ratio) * f


def build_scheduler(optimizer: torch.optim.Optimizer, max_iters: int, kind: str = "poly", power: float = 0.9,
                    warmup_iters: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration LambdaLR; call ``scheduler.step()`` after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, max_iters, kind, power, warmup_iters))
