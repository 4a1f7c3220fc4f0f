"""A fixed, stratified held-out split of a small labelled set (issue 16: score CAMs on photos the classifier
never saw).

Why a rule and not a random cut: with ~100 photos a random 30 often leaves a rare class only on one side, and the
held-out score then says nothing about it. The rule below is deterministic (seeded shuffle, then a greedy pass
from the rarest class up), so the committed lists can be regenerated and checked.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np


def stratified_holdout(labels: Mapping[str, Sequence[int]], size: int, seed: int = 0,
                       ) -> tuple[list[str], list[str]]:
    """Split image ids into (train, heldout), both sorted, ``len(heldout) == size``.

    Rule: ids are shuffled with ``numpy.random.default_rng(seed)`` (sorted first, so the input order does not
    matter). Every class with at least 2 images gets a held-out quota ``max(1, round(n_k * size / N))``;
    classes are visited from the rarest up and take images (in shuffled order) into held-out until the quota
    is met, an image being taken only if every one of its classes keeps at least one training image. Held-out
    is then filled to ``size`` in shuffled order under the same condition (images without any class count as
    ordinary images). So each class with >= 2 images appears in both lists; a class with 1 image is train-only.
    """
    ids = sorted(labels)
    n = len(ids)
    if not 0 < size < n:
        raise ValueError(f"held-out size must be between 1 and {n - 1}, got {size}")
    order = [ids[k] for k in np.random.default_rng(seed).permutation(n)]
    count = Counter(c for i in ids for c in set(labels[i]))
    held: set[str] = set()
    held_count: Counter = Counter()

    def can_take(i: str) -> bool:
        return i not in held and all(count[c] - held_count[c] > 1 for c in set(labels[i]))

    def take(i: str) -> None:
        held.add(i)
        held_count.update(set(labels[i]))

    for c in sorted(count, key=lambda c: (count[c], c)):
        if count[c] < 2:
            continue
        quota = max(1, round(count[c] * size / n))
        for i in order:
            if held_count[c] >= quota or len(held) >= size:
                break
            if c in labels[i] and can_take(i):
                take(i)
    for i in order:
        if len(held) >= size:
            break
        if can_take(i):
            take(i)
    if len(held) != size:
        raise ValueError(f"could only hold out {len(held)} of {size} images without emptying a class in train")
    return sorted(set(ids) - held), sorted(held)
