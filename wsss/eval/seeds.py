"""Figures over training seeds: mean ± spread, and whether a refinement's gain is shown at all.

Why: one run of a WSSS chain moves by a point or two from seed to seed; a refinement that "gains 1.5 mIoU"
on one seed may gain nothing. Every benchmark row is the mean over seeds with the sample standard deviation,
and a gain (the per-seed difference between a stage and its input, paired by seed) counts as shown only when
its mean exceeds twice its spread (:func:`paired_gain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["MeanStd", "Gain", "mean_std", "paired_gain"]


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of ``n`` finite values."""

    mean: float
    std: float
    n: int

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """'61.2 ± 0.8' (values x ``scale``); one value prints without a spread; none prints '-'."""
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.std:.{digits}f}"


def mean_std(values: Sequence[float | None]) -> MeanStd:
    """:class:`MeanStd` of the finite entries of ``values`` (None / NaN skipped)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return MeanStd(float("nan"), float("nan"), 0)
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return MeanStd(m, s, len(v))


@dataclass(frozen=True)
class Gain:
    """A refinement's per-seed gain over its input: its mean ± std and whether it is shown (mean > 2 std)."""

    stats: MeanStd

    @property
    def shown(self) -> bool | None:
        """True / False for >= 2 seeds; None when a spread cannot be measured (fewer than 2 paired seeds)."""
        if self.stats.n < 2:
            return None
        return abs(self.stats.mean) > 2 * self.stats.std

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """'+3.1 ± 0.4' when shown, 'not shown (+0.3 ± 0.5)' when within twice the spread, '+3.1 (1 seed)'."""
        if self.stats.n == 0:
            return "-"
        text = f"{scale * self.stats.mean:+.{digits}f}"
        if self.shown is None:
            return f"{text} (1 seed, no spread)"
        text += f" ± {scale * self.stats.std:.{digits}f}"
        return text if self.shown else f"not shown ({text})"


def paired_gain(out: Sequence[float | None], inp: Sequence[float | None]) -> Gain:
    """The gain of ``out`` over ``inp``, paired by position (seed): mean ± std of ``out[i] - inp[i]`` over the
    seeds where both are finite. Pairing removes what the seeds share (the same CAMs feed both stages)."""
    diffs = [None if a is None or b is None else float(a) - float(b) for a, b in zip(out, inp)]
    return Gain(mean_std(diffs))
