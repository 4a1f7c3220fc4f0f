"""The AffinityNet loss: cross-entropy on pixel-pair affinities, balanced over three kinds of pairs.

Why balanced: background-background pairs outnumber the others by orders of magnitude, and negatives (the
pairs across a boundary, the only ones that teach where objects end) are the rarest. Averaging each kind over
its own pairs and weighting them ``bg/4 + fg/4 + neg/2`` (AffinityNet, Ahn & Kwak 2018, ``train_aff.py``)
gives boundaries as much say as the interiors.
"""

from __future__ import annotations

import torch

__all__ = ["affinity_loss"]


def affinity_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor,
                  eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Balanced pairwise affinity loss.

    aff: [B, E, h, w] affinities in (0, 1]; bg_pos / fg_pos / neg: [B, E, h, w] bool (or 0/1) pair masks from
    :func:`wsss.refine.affinity_labels.pair_labels`.
    Returns a dict of scalars: ``bg`` = mean of ``-log(a)`` over background pairs, ``fg`` = the same over
    same-class foreground pairs, ``neg`` = mean of ``-log(1 - a)`` over different-label pairs (each 0 when it
    has no pairs), and ``loss = bg / 4 + fg / 4 + neg / 2``.
    """
    aff = aff.float()
    bg_pos, fg_pos, neg = (m.to(aff.dtype) for m in (bg_pos, fg_pos, neg))
    pos_nll = -torch.log(aff + eps)
    neg_nll = -torch.log(1.0 + eps - aff)
    bg = (bg_pos * pos_nll).sum() / (bg_pos.sum() + eps)
    fg = (fg_pos * pos_nll).sum() / (fg_pos.sum() + eps)
    ng = (neg * neg_nll).sum() / (neg.sum() + eps)
    return {"loss": bg / 4 + fg / 4 + ng / 2, "bg": bg, "fg": fg, "neg": ng}
