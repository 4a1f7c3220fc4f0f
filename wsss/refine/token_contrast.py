"""Token Contrast losses of ToCo (Ru et al., CVPR 2023) as small pure functions over tensors.

Patch Token Contrast (PTC): the final patch tokens of a ViT over-smooth (they all become alike). PTC takes
pseudo token relations (same class / different class / unknown, from the auxiliary CAM of an intermediate
layer) and pulls the cosine similarity of final tokens of a positive pair to 1 and pushes that of a negative
pair to 0. As in ToCo the similarity is ``|cos|``: negatives are pushed towards orthogonal, not opposite.

Class Token Contrast (CTC): class tokens of local crops that contain uncertain CAM regions ("positives") are
pulled towards the class token of the global views (a teacher projection), and away from the class tokens of
background-dominated crops ("negatives"), InfoNCE style.

Both losses are written from the formulas, not from the reference code: empty positive/negative sets
contribute 0 instead of ToCo's ``+1`` smoothing of the denominators, and CTC uses L2-normalised projections
(cosine similarity / temperature) so the exponentials stay bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["RELATION_POS", "RELATION_NEG", "RELATION_IGNORE", "relation_from_labels", "ptc_loss", "ctc_loss"]

RELATION_POS = 1
RELATION_NEG = 0
RELATION_IGNORE = 255


def relation_from_labels(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Pseudo token relations from per-token labels.

    labels: [B, N] (or [B, h, w], flattened row-major) int, class per token, ``ignore_index`` = unknown.
    Returns [B, N, N] uint8: RELATION_POS where both tokens are known and equal, RELATION_NEG where both are
    known and differ, RELATION_IGNORE where either is unknown and on the diagonal (a token with itself
    carries no information).
    """
    lab = labels.reshape(labels.shape[0], -1)
    known = lab != ignore_index
    same = lab[:, :, None] == lab[:, None, :]
    rel = torch.where(same, RELATION_POS, RELATION_NEG).to(torch.uint8)
    both = known[:, :, None] & known[:, None, :]
    rel = torch.where(both, rel, torch.full_like(rel, RELATION_IGNORE))
    n = lab.shape[1]
    rel[:, torch.arange(n), torch.arange(n)] = RELATION_IGNORE
    return rel


def _token_matrix(tokens: torch.Tensor) -> torch.Tensor:
    """[B, D, h, w] -> [B, N, D]; [B, N, D] passes through."""
    if tokens.dim() == 4:
        b, d = tokens.shape[:2]
        return tokens.reshape(b, d, -1).transpose(1, 2)
    if tokens.dim() == 3:
        return tokens
    raise ValueError(f"tokens must be [B, D, h, w] or [B, N, D], got shape {tuple(tokens.shape)}")


def ptc_loss(tokens: torch.Tensor, relation: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Patch Token Contrast loss.

    tokens: final patch tokens, [B, D, h, w] or [B, N, D] float (N = h*w, row-major).
    relation: [B, N, N] uint8/int from :func:`relation_from_labels`.
    Returns a scalar ``0.5 * (1 - mean_pos |cos|) + 0.5 * mean_neg |cos|`` where the means run over all
    positive / negative pairs of the batch; a term whose pair set is empty is 0.
    Identical tokens give 0.5 (when both pair kinds exist); tokens identical within a class and orthogonal
    across classes give 0.
    """
    x = F.normalize(_token_matrix(tokens).float(), p=2, dim=-1, eps=eps)
    cos = torch.bmm(x, x.transpose(1, 2)).abs()
    pos = (relation == RELATION_POS).to(cos.dtype)
    neg = (relation == RELATION_NEG).to(cos.dtype)
    zero = cos.sum() * 0.0  # keeps the graph when a pair set is empty
    pos_term = 1.0 - (cos * pos).sum() / pos.sum() if pos.sum() > 0 else zero
    neg_term = (cos * neg).sum() / neg.sum() if neg.sum() > 0 else zero
    return 0.5 * pos_term + 0.5 * neg_term


def ctc_loss(student: torch.Tensor, teacher: torch.Tensor, positive: torch.Tensor,
             temperature: float = 0.5) -> torch.Tensor:
    """Class Token Contrast loss (InfoNCE of teacher global views against student views).

    student: [B, S, D] projected class tokens of the student views of each image (global views first, then
             local crops).
    teacher: [B, T, D] projected class tokens of the global views from the teacher (no gradient needed).
    positive: [B, S] bool, True for views that should agree with the global object (the global views and
              crops with enough uncertain/foreground area), False for background-dominated crops.
    temperature: softmax temperature on cosine similarities.

    For image b, teacher view t and positive student view j::

        l(b, t, j) = -log( exp(s_tj) / (exp(s_tj) + sum_{k negative} exp(s_tk)) ),  s = cos / temperature

    The loss averages l over teacher views and positive views of each image, then over images with at least
    one positive view. With no negatives every term is 0 (nothing to contrast against).
    Returns a scalar.
    """
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    logits = torch.einsum("btd,bsd->bts", t, s) / temperature  # [B, T, S]
    pos = positive.to(torch.bool)
    neg = ~pos
    # log-sum-exp over the negatives of each (b, t), -inf when there are none
    neg_logits = logits.masked_fill(~neg[:, None, :], float("-inf"))
    neg_lse = torch.logsumexp(neg_logits, dim=-1, keepdim=True)  # [B, T, 1]
    denom = torch.logaddexp(logits, neg_lse.expand_as(logits))
    per_pair = denom - logits  # -log softmax of the positive against the negatives, [B, T, S]
    pos_f = pos[:, None, :].to(per_pair.dtype).expand_as(per_pair)
    per_pair = torch.where(pos_f > 0, per_pair, torch.zeros_like(per_pair))
    n_pos = pos.sum(dim=1).to(per_pair.dtype)  # [B]
    per_image = per_pair.sum(dim=(1, 2)) / (n_pos.clamp(min=1) * logits.shape[1])
    valid = n_pos > 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return per_image[valid].mean()
