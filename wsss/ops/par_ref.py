"""PAR (pixel-adaptive refinement) in plain PyTorch: the reference the kernels are checked against.

This is the formulation of AFA / ToCo (``PAR`` module, written here from the formula): it materialises
the unfolded neighbourhood, ``[B, C, N, H, W]`` for the image and ``[B, K, N, H, W]`` for the masks at every
iteration (N = 8 x number of dilations, 48 for the default six), which is what makes it slow and memory
hungry at full resolution. It is differentiable and runs on any device; ``wsss.ops.par`` uses it on CPU,
when a gradient is needed, or when the CUDA build fails.

Formula (pixel p, neighbour n among the 8 stencil pixels at each dilation d, replicate padding):

    std_c(p) = unbiased std of image channel c over the N neighbours of p
    a_n(p)   = -mean_c ( |I_c(n) - I_c(p)| / (std_c(p) + 1e-8) / w1 )^2
    g_n      = -( dist_n / (std_n(dist) + 1e-8) / w1 )^2,  dist_n = d (edge) or d*sqrt(2) (diagonal)
    W_n(p)   = softmax_n a(p) + w2 * softmax_n g          (rows sum to 1 + w2, as in the original)
    M_k(p)  <- sum_n W_n(p) M_k(n)                         repeated num_iter times

Note the position term uses w1 as its temperature and w2 only as its mixing weight, as the original code does.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_DILATIONS", "par_neighbor_offsets", "par_position_weights", "par_affinity_reference",
           "par_reference"]

DEFAULT_DILATIONS = (1, 2, 4, 8, 12, 24)

#: The 3x3 stencil without its centre, row-major: the order of the N neighbour axis (per dilation).
_STENCIL = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def par_neighbor_offsets(dilations: Sequence[int]) -> list[tuple[int, int]]:
    """The N = 8 * len(dilations) neighbour offsets ``(dy, dx)``, dilation-major, stencil order within."""
    return [(sy * d, sx * d) for d in dilations for sy, sx in _STENCIL]


def par_position_weights(dilations: Sequence[int], w1: float, w2: float, dtype: torch.dtype = torch.float64,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """The position term ``w2 * softmax_n g``: [N] (the same for every pixel)."""
    dist = torch.tensor([d * (math.sqrt(2.0) if sy and sx else 1.0) for d in dilations for sy, sx in _STENCIL],
                        dtype=dtype, device=device)
    logits = -(dist / (dist.std() + 1e-8) / w1) ** 2
    return w2 * torch.softmax(logits, dim=0)


def _unfold_neighbors(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, N, H, W]: every pixel's neighbours, replicate padding."""
    h, w = x.shape[-2:]
    out = []
    for d in dilations:
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        for sy, sx in _STENCIL:
            out.append(padded[:, :, d + sy * d:d + sy * d + h, d + sx * d:d + sx * d + w])
    return torch.stack(out, dim=2)


def par_affinity_reference(image: torch.Tensor, dilations: Sequence[int] = DEFAULT_DILATIONS, w1: float = 0.3,
                           w2: float = 0.01) -> torch.Tensor:
    """PAR weights W_n(p) from the image colours.

    image: [B, C, H, W] float (RGB, raw or normalised; the per-window std makes the scale irrelevant).
    Returns [B, N, H, W] in image.dtype, N = 8 * len(dilations).
    """
    nb = _unfold_neighbors(image, dilations)  # [B, C, N, H, W]
    std = nb.std(dim=2, keepdim=True)
    colour = -((nb - image.unsqueeze(2)).abs() / (std + 1e-8) / w1) ** 2
    colour = colour.mean(dim=1)  # [B, N, H, W]
    pos = par_position_weights(dilations, w1, w2, dtype=image.dtype, device=image.device)
    return torch.softmax(colour, dim=1) + pos.view(1, -1, 1, 1)


def par_reference(image: torch.Tensor, masks: torch.Tensor, dilations: Sequence[int] = DEFAULT_DILATIONS,
                  num_iter: int = 10, w1: float = 0.3, w2: float = 0.01) -> torch.Tensor:
    """Refine masks with PAR, unfold formulation. image [B, C, H, W], masks [B, K, H, W] -> [B, K, H, W].

    Runs in the dtype of its inputs (the wrapper ``wsss.ops.par`` handles dtypes and checks shapes).
    """
    aff = par_affinity_reference(image.to(masks.dtype), dilations, w1, w2).unsqueeze(1)  # [B, 1, N, H, W]
    for _ in range(num_iter):
        masks = (_unfold_neighbors(masks, dilations) * aff).sum(dim=2)
    return masks
