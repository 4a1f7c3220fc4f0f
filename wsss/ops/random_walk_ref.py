"""Random walk with a learned local affinity (AffinityNet / IRN) in plain PyTorch.

Graph: pixels of an h x w grid; pixel p = (y, x) is joined to p + o_e for the E offsets of a half set
(:func:`radius_offsets`: dy > 0, or dy == 0 and dx > 0, with dy^2 + dx^2 < radius^2, IRN's path destinations).
``affinity[b, e, y, x] = a(p, p + o_e)`` in [0, 1]; the graph is symmetric, so the same number is the weight of
p + o_e -> p. Pixels outside the grid do not exist (their edges are dropped, not padded). Every pixel has a
self-loop of affinity 1, as IRN's ``affinity_sparse2dense`` puts ones on the diagonal.

Transition: ``T = D^-1 A^beta`` with ``A`` the symmetric affinity matrix (unit diagonal) and ``D`` its row
sums after the power, so each pixel's outgoing weights sum to 1; ``x <- T x`` for ``t`` steps on every channel
of x [B, C, h, w] (CAMs with a background channel). IRN/AffinityNet write the same thing as ``x @ T'`` with the
column-normalised ``T' = A^beta D^-1`` and take ``t = 2^exp_times`` by repeated squaring (IRN: beta 10,
exp_times 8, t = 256).

Two implementations:

- :func:`random_walk_reference`: shifted copies of the grid, ``O(E * C * h * w)`` memory, differentiable;
  what ``wsss.ops.random_walk`` runs on CPU or when a gradient is needed.
- :func:`random_walk_dense`: the dense ``hw x hw`` transition matrix and its matrix power, the way IRN and
  AffinityNet compute it (memory ``O((hw)^2)``: 1 GiB at 128 x 128 in float32); the benchmark baseline.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["radius_offsets", "as_offset_list", "random_walk_reference", "transition_matrix_dense",
           "random_walk_dense"]

Offsets = Sequence[tuple[int, int]] | torch.Tensor | int


def radius_offsets(radius: int) -> list[tuple[int, int]]:
    """Half set of offsets ``(dy, dx)`` with ``0 < dy^2 + dx^2 < radius^2``: dy > 0, or dy == 0 and dx > 0.

    IRN's ``PathIndex(radius)`` search directions, in the same order: 34 offsets for radius 5 (the mirrored
    offsets complete the disc of 68 neighbours). radius must be >= 1 (radius 1 gives no offsets).
    """
    if int(radius) != radius or radius < 1:
        raise ValueError(f"radius must be a positive integer, got {radius!r}")
    r = int(radius)
    offsets = [(0, dx) for dx in range(1, r)]
    offsets += [(dy, dx) for dy in range(1, r) for dx in range(-r + 1, r) if dy * dy + dx * dx < r * r]
    return offsets


def as_offset_list(offsets: Offsets) -> list[tuple[int, int]]:
    """Normalise offsets (an int radius, E pairs, or an [E, 2] integer tensor) and check it is a half set."""
    if isinstance(offsets, int):
        return radius_offsets(offsets)
    pairs = offsets.tolist() if torch.is_tensor(offsets) else list(offsets)
    out = []
    for pair in pairs:
        if len(pair) != 2 or any(int(v) != v for v in pair):
            raise ValueError(f"offsets must be integer (dy, dx) pairs, got {pair!r}")
        out.append((int(pair[0]), int(pair[1])))
    for dy, dx in out:
        if not (dy > 0 or (dy == 0 and dx > 0)):
            raise ValueError(f"offset {(dy, dx)} is not in the half set (dy > 0, or dy == 0 and dx > 0); each "
                             "undirected edge is given once and mirrored (see radius_offsets)")
    if len(set(out)) != len(out):
        raise ValueError("offsets contain duplicates")
    return out


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = t[..., y + dy, x + dx]`` where that is inside the grid, else 0."""
    h, w = t.shape[-2:]
    out = torch.zeros_like(t)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = t[..., ys + dy:ye + dy, xs + dx:xe + dx]
    return out


def random_walk_reference(x: torch.Tensor, affinity: torch.Tensor, offsets: Offsets, beta: float = 10.0,
                          t: int = 256) -> torch.Tensor:
    """t steps of ``x <- D^-1 A^beta x`` without the hw x hw matrix (see the module docstring).

    x: [B, C, h, w] float; affinity: [B, E, h, w] float >= 0 (entries whose partner is outside the grid are
    ignored); offsets: E half-set pairs, an [E, 2] tensor, or an int radius. Returns [B, C, h, w], dtype of x.
    Differentiable in x and affinity.
    """
    offs = as_offset_list(offsets)
    aff = affinity.to(x.dtype)
    ones = torch.ones_like(aff[:, :1])
    fwd, bwd = [], []
    degree = torch.ones_like(ones)
    for e, (dy, dx) in enumerate(offs):
        wf = aff[:, e:e + 1].pow(beta) * _shift(ones, dy, dx)  # edge p -> p + o, stored at p
        wb = _shift(wf, -dy, -dx)  # mirrored edge p -> p - o, stored at p - o
        fwd.append(wf)
        bwd.append(wb)
        degree = degree + wf + wb
    inv_degree = 1.0 / degree
    for _ in range(t):
        acc = x
        for (dy, dx), wf, wb in zip(offs, fwd, bwd):
            acc = acc + wf * _shift(x, dy, dx) + wb * _shift(x, -dy, -dx)
        x = acc * inv_degree
    return x


def transition_matrix_dense(affinity: torch.Tensor, offsets: Offsets, beta: float = 10.0) -> torch.Tensor:
    """The dense row-stochastic transition ``D^-1 A^beta``: [B, hw, hw] (row p: where pixel p draws from).

    Built with index arithmetic (no Python loop over pixels), as IRN's sparse-to-dense conversion does.
    """
    offs = as_offset_list(offsets)
    b, _, h, w = affinity.shape
    n = h * w
    A = torch.zeros(b, n, n, dtype=affinity.dtype, device=affinity.device)
    idx = torch.arange(n, device=affinity.device)
    A[:, idx, idx] = 1.0
    ys = torch.arange(h, device=affinity.device).view(h, 1).expand(h, w)
    xs = torch.arange(w, device=affinity.device).view(1, w).expand(h, w)
    for e, (dy, dx) in enumerate(offs):
        valid = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        src = (ys * w + xs)[valid]
        dst = ((ys + dy) * w + (xs + dx))[valid]
        vals = affinity[:, e][:, valid]
        A[:, src, dst] = vals
        A[:, dst, src] = vals
    A = A.pow(beta)
    return A / A.sum(dim=-1, keepdim=True)


def random_walk_dense(x: torch.Tensor, affinity: torch.Tensor, offsets: Offsets, beta: float = 10.0,
                      t: int = 256) -> torch.Tensor:
    """The same walk through the dense matrix power ``T^t`` (repeated squaring, as IRN). Memory O((hw)^2).

    x: [B, C, h, w]; affinity: [B, E, h, w]. Returns [B, C, h, w].
    """
    b, c, h, w = x.shape
    T = transition_matrix_dense(affinity.to(x.dtype), offsets, beta)
    Tt = torch.linalg.matrix_power(T, t)
    out = torch.bmm(Tt, x.reshape(b, c, h * w).transpose(1, 2))  # [B, hw, C]
    return out.transpose(1, 2).reshape(b, c, h, w)
