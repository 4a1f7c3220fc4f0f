"""``random_walk``: propagate CAMs with a learned local affinity (AffinityNet / IRN), no hw x hw matrix.

One function, three implementations (see :mod:`wsss.ops.backend`): the PyTorch reference
(:func:`wsss.ops.random_walk_ref.random_walk_reference`, shifted copies), the C++ CPU twin and the CUDA
kernel (``csrc/random_walk*.{h,cpp,cu}``). Semantics and the dense equivalent: :mod:`wsss.ops.random_walk_ref`.
"""

from __future__ import annotations

import torch

from wsss.ops import random_walk_ref
from wsss.ops.backend import checked_backend
from wsss.ops.random_walk_ref import Offsets, as_offset_list, radius_offsets, random_walk_reference
from wsss.ops.selfcheck import compare_with_reference

__all__ = ["random_walk"]

MAX_OFFSETS = 256  # kRwMaxOffsets in csrc/random_walk.h


def random_walk(x: torch.Tensor, affinity: torch.Tensor, offsets: Offsets = 5, beta: float = 10.0, t: int = 256,
                backend: str | None = None) -> torch.Tensor:
    """t steps of ``x <- D^-1 A^beta x`` on the pixel grid, A = symmetric local affinity with unit self-loops.

    x: [B, C, h, w] float (CAMs incl. the background channel; every channel walks independently).
    affinity: [B, E, h, w] float in [0, 1]: ``affinity[b, e, y, x]`` relates (y, x) and (y + dy_e, x + dx_e);
        entries whose partner is outside the grid are ignored. Each undirected edge appears once.
    offsets: the E ``(dy, dx)`` pairs, a half set (dy > 0, or dy == 0 and dx > 0; see ``radius_offsets``),
        as a list, an [E, 2] integer tensor, or an int radius meaning ``radius_offsets(radius)``.
    beta: affinity exponent (IRN: 10); t: number of steps (IRN: 2^8 = 256).
    backend: None (``WSSS_OPS`` env var, default auto), 'auto', 'torch', 'cpp' or 'cuda' (wsss.ops.backend).
    Returns [B, C, h, w] in x.dtype. Row-stochastic: a constant x stays constant.

    Kernels compute in float32 (float64 for float64 x); half inputs are cast and the result cast back.
    Differentiable only through the 'torch' backend (auto picks it when a gradient is needed).
    """
    offs = as_offset_list(offsets)
    if x.dim() != 4 or affinity.dim() != 4:
        raise ValueError(f"random_walk: x and affinity must be [B, C, h, w] and [B, E, h, w], got "
                         f"{tuple(x.shape)} and {tuple(affinity.shape)}")
    if affinity.shape[0] != x.shape[0] or affinity.shape[-2:] != x.shape[-2:] or affinity.shape[1] != len(offs):
        raise ValueError(f"random_walk: affinity {tuple(affinity.shape)} must be [B, E={len(offs)}, h, w] for x "
                         f"{tuple(x.shape)}")
    if x.device != affinity.device:
        raise ValueError(f"random_walk: x on {x.device}, affinity on {affinity.device}")
    if not (x.is_floating_point() and affinity.is_floating_point()):
        raise ValueError(f"random_walk: x and affinity must be floating point, got {x.dtype}, {affinity.dtype}")
    if not beta > 0:
        raise ValueError(f"random_walk: beta must be > 0, got {beta}")
    if int(t) != t or t < 0:
        raise ValueError(f"random_walk: t must be a non-negative integer, got {t!r}")
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or affinity.requires_grad)
    choice = checked_backend("random_walk", x.device, needs_grad, backend, _self_check)
    if choice == "torch" or not offs:
        return random_walk_reference(x, affinity, offs, float(beta), int(t))
    if len(offs) > MAX_OFFSETS:
        raise ValueError(f"random_walk: the kernels take at most {MAX_OFFSETS} offsets, got {len(offs)}; "
                         "use backend 'torch'")
    return _random_walk_kernel(x, affinity, offs, float(beta), int(t))


def _random_walk_kernel(x: torch.Tensor, affinity: torch.Tensor, offs: list[tuple[int, int]], beta: float,
                        t: int) -> torch.Tensor:
    """The compiled path (CUDA kernel for CUDA tensors, C++ twin for CPU ones); checked arguments, 1..256 offsets."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    aff = affinity.to(acc).contiguous()
    flat = [v for pair in offs for v in pair]
    weights = torch.empty_like(aff)
    inv_degree = aff.new_empty(aff.shape[0], aff.shape[2], aff.shape[3])
    torch.ops.wsss_ops.rw_prepare(aff, weights, inv_degree, flat, beta)
    cur = x.to(acc, copy=True).contiguous()  # own buffer: the op writes into it
    tmp = torch.empty_like(cur)
    torch.ops.wsss_ops.rw_propagate(weights, inv_degree, cur, tmp, flat, t)
    return cur.to(x.dtype)


#: Self-check input: 2 grids of 13 x 21 with IRN's radius 5 (34 offsets, 4 rows down: edges leave the grid at
#: every border), 11 channels (a full chunk of 8 and a partial one), beta 10 on affinities in [0.5, 1] (so the
#: walk mixes instead of staying put), 5 steps (odd: the ping-pong buffer).
_CHECK_SHAPE = (2, 11, 13, 21)
_CHECK_OFFSETS = radius_offsets(5)
_CHECK_BETA, _CHECK_STEPS = 10.0, 5


def _check_inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = _CHECK_SHAPE
    g = torch.Generator().manual_seed(20261201)
    x = torch.softmax(torch.randn(b, c, h, w, generator=g, dtype=dtype) * 3, dim=1)
    aff = 0.5 + 0.5 * torch.rand(b, len(_CHECK_OFFSETS), h, w, generator=g, dtype=dtype)
    return x.to(device), aff.to(device)


def _self_check(device: torch.device) -> str | None:
    """The compiled walk against the reference on the fixed input (float32 and float64); None when they agree."""
    args = (_CHECK_OFFSETS, _CHECK_BETA, _CHECK_STEPS)
    problem, _ = compare_with_reference(lambda x, a: _random_walk_kernel(x, a, *args),
                                        lambda x, a: random_walk_ref.random_walk_reference(x, a, *args), _check_inputs,
                                        device)
    return problem
