"""Deterministic k-means (Lloyd's algorithm, k-means++ seeding from a seeded generator) over feature rows.

Used by W-OoD (clusters of out-of-distribution features, wsss.losses.wood) and by biased-object removal
(clusters of dense backbone features, wsss.refine.debias). Pure torch on CPU tensors: the same seed gives the
same centres and assignments.
"""

from __future__ import annotations

import torch

__all__ = ["kmeans", "nearest_center"]


def nearest_center(x: torch.Tensor, centers: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """x: [N, D], centers: [K, D] float -> [N] int64 index of the nearest centre (squared Euclidean; the
    lowest index wins a tie). Chunked so [chunk, K] distances bound the memory."""
    out = torch.empty(x.shape[0], dtype=torch.int64)
    c2 = (centers.double() ** 2).sum(1)
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk].double()
        d = c2[None, :] - 2.0 * xs @ centers.double().T  # |x|^2 is the same for every centre
        out[s:s + chunk] = d.argmin(1)
    return out


def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster rows of ``x`` [N, D] into ``k`` groups.

    Returns (assignments [N] int64, centres [k', D] float32) with k' = min(k, N). Seeding: k-means++ drawn
    from ``torch.Generator().manual_seed(seed)``; an emptied cluster keeps its previous centre. Stops early
    when the assignments no longer change.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N, D] tensor, got shape {tuple(x.shape)}")
    x = x.detach().float().cpu()
    n = x.shape[0]
    k = max(1, min(int(k), n))
    g = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(n, (1,), generator=g))
    centers = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1).double()
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: repeat the first one
            idx = first
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=g))
        centers.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1).double())
    c = torch.stack(centers)
    assign = nearest_center(x, c)
    for _ in range(int(iters)):
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], c)
        new = nearest_center(x, c)
        if torch.equal(new, assign):
            break
        assign = new
    return assign, c
