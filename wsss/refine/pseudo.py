"""From CAMs to pseudo masks: background score, optional dense CRF, IRN-style ignore band.

Why: a segmentation network is trained on pseudo masks, and a wrong label hurts it more than a missing one.
So pixels where the evidence is ambiguous become 255 (ignore) instead of a guess, and only the image's
labelled classes can ever appear (classes outside ``keys`` have no channel at all, so an argmax cannot pick
them).

Labels are decided in a compact space: channel 0 = background, channel ``k + 1`` = class ``keys[k]``;
:func:`label_lut` maps the argmax back to class indices.

Two ways to decide the label of a pixel (:class:`PseudoParams`):

* a single decision with a background score: a constant ``bg_threshold`` (a pixel is foreground when its best
  CAM beats it) or ``bg_power`` (background = ``(1 - max_k cam_k) ** power``, as in CLIP-ES); optionally
  pixels whose winning probability is below ``min_confidence`` become 255 (CLIP-ES keeps > 0.95 after CRF);
* the ignore band of IRN (``conf_fg`` > ``conf_bg``): one decision with the high background threshold
  ``conf_fg`` (confident foreground), one with the low ``conf_bg`` (confident background). A pixel is the fg
  decision's class where that decision says foreground, background where both say background, and 255 where
  they disagree (foreground only at the low threshold).

Either decision can be refined by a dense CRF (:mod:`wsss.refine.crf`) on the probabilities it thresholds.
With ``crf.unary='labels'`` the CRF starts from the hard decision (the argmax over the CAMs padded with the
constant background score), as IRN's ``cam_to_ir_label`` does; that is the default for the ignore band
(:meth:`PseudoParams.from_config`), ``'softmax'`` the default for a single decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from wsss.data.palette import IGNORE_INDEX
from wsss.errors import WSSSError
from wsss.refine.crf import PROB_FLOOR, CRFParams, dense_crf


def background_score(cams: np.ndarray, threshold: float | None = None, power: float | None = None,
                     ) -> np.ndarray:
    """The background score a pixel's CAMs compete with: [H, W] float32.

    Args:
        cams: [K, H, W] float in [0, 1] (K may be 0: an image with no labelled class is all background).
        threshold: constant background score (exactly one of threshold / power).
        power: background = (1 - max_k cams_k) ** power; larger powers shrink the background.
    """
    if (threshold is None) == (power is None):
        raise WSSSError("give exactly one of a background threshold and a background power")
    h, w = cams.shape[1:]
    if threshold is not None:
        return np.full((h, w), float(threshold), dtype=np.float32)
    peak = cams.max(axis=0) if cams.shape[0] else np.zeros((h, w), dtype=np.float32)
    return np.power(np.clip(1.0 - peak, 0.0, 1.0), float(power)).astype(np.float32)


def scores_to_probs(cams: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Stack background and class scores and normalise them into per-pixel probabilities.

    Args:
        cams: [K, H, W] float in [0, 1], class scores of the image's classes.
        bg: [H, W] float, the background score (:func:`background_score`).

    Returns:
        [K + 1, H, W] float32, channel 0 = background, summing to 1 at each pixel. The argmax equals the
        argmax of the raw scores (normalising only divides by a per-pixel constant), and a dense CRF sees the
        same unary up to a per-pixel constant, which mean-field inference ignores.
    """
    scores = np.concatenate([np.asarray(bg, dtype=np.float32)[None], np.asarray(cams, dtype=np.float32)], axis=0)
    scores = np.clip(np.nan_to_num(scores, nan=0.0), PROB_FLOOR, None)
    return scores / scores.sum(axis=0, keepdims=True)


def label_lut(keys: Iterable[int]) -> np.ndarray:
    """Compact channel -> class index: [K + 1] int64, ``[0, keys...]``."""
    return np.concatenate([[0], np.asarray(list(keys), dtype=np.int64).reshape(-1)]).astype(np.int64)


def restrict_to_labels(keys: np.ndarray, cams: np.ndarray, labels: Iterable[int] | None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the CAMs of image-level labelled classes (all of them when ``labels`` is None).

    keys: [K] int; cams: [K, H, W]. Returns (keys [K'], cams [K', H, W]) in the original order.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if labels is None:
        return keys, cams
    keep = np.isin(keys, np.asarray(list(labels), dtype=np.int64))
    return keys[keep], cams[keep]


def decide(keys: np.ndarray, cams: np.ndarray, bg: np.ndarray, image: np.ndarray | None = None,
           crf: CRFParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One labelling decision: argmax of (background, CAMs), optionally after a dense CRF.

    Args:
        keys: [K] int class indices of the CAM channels.
        cams: [K, H, W] float in [0, 1].
        bg: [H, W] background score.
        image: [H, W, 3] uint8 RGB; needed only with ``crf``.
        crf: CRF settings, or None for plain thresholding.

    Returns:
        (labels [H, W] uint8 class indices from {0} | keys, confidence [H, W] float32 = winning probability).
    """
    probs = scores_to_probs(cams, bg)
    if crf is not None:
        if image is None:
            raise ValueError("a CRF decision needs the image")
        probs = dense_crf(image, probs, crf)
    winner = probs.argmax(axis=0)
    labels = label_lut(keys)[winner].astype(np.uint8)
    confidence = np.take_along_axis(probs, winner[None], axis=0)[0]
    return labels, confidence


def combine_ignore_band(fg_labels: np.ndarray, bg_labels: np.ndarray) -> np.ndarray:
    """IRN's combination of a confident-foreground and a confident-background decision.

    Args:
        fg_labels: [H, W] uint8 labels decided with the HIGH background threshold (foreground is confident).
        bg_labels: [H, W] uint8 labels decided with the LOW background threshold (background is confident).

    Returns:
        [H, W] uint8: ``fg_labels`` where it is foreground; 0 where both are background; 255 where the fg
        decision says background but the bg decision says foreground.
    """
    out = fg_labels.astype(np.uint8).copy()
    fg_says_bg = fg_labels == 0
    out[fg_says_bg & (bg_labels != 0)] = IGNORE_INDEX
    return out


@dataclass(frozen=True)
class PseudoParams:
    """How CAMs become a pseudo mask (see the module doc). Exactly one mode:
    ``conf_fg`` + ``conf_bg`` (ignore band), ``bg_threshold``, or ``bg_power``."""

    bg_threshold: float | None = None
    bg_power: float | None = None
    conf_fg: float | None = 0.30
    conf_bg: float | None = 0.05
    min_confidence: float | None = None
    crf: CRFParams | None = None

    def __post_init__(self) -> None:
        band = self.conf_fg is not None or self.conf_bg is not None
        modes = [name for name, on in (("conf_fg/conf_bg", band), ("bg_threshold", self.bg_threshold is not None),
                                       ("bg_power", self.bg_power is not None)) if on]
        if len(modes) != 1:
            raise WSSSError(
                f"pseudo masks need exactly one background mode, got {modes or 'none'}: set conf_fg and conf_bg "
                "(ignore band), or conf_fg=None conf_bg=None and one of bg_threshold / bg_power")
        if band:
            if self.conf_fg is None or self.conf_bg is None:
                raise WSSSError("the ignore band needs both conf_fg and conf_bg")
            if not self.conf_fg > self.conf_bg:
                raise WSSSError(f"conf_fg ({self.conf_fg}) must be above conf_bg ({self.conf_bg}): the fg decision "
                                "uses the high background threshold")
            if self.min_confidence is not None:
                raise WSSSError("min_confidence applies to a single decision (bg_threshold / bg_power), "
                                "not to the conf_fg/conf_bg ignore band")

    @property
    def band(self) -> bool:
        return self.conf_fg is not None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "PseudoParams":
        """Build from a ``pseudo = dict(...)`` section; inconsistent settings are a one-line error."""
        s = dict(section)
        # IRN's path (the conf_fg / conf_bg ignore band) refines the hard decisions: 'labels' unary unless the
        # section says otherwise; a single decision keeps the probabilities ('softmax', CLIP-ES / ToCo).
        band = s.get("conf_fg") is not None or s.get("conf_bg") is not None
        crf = (CRFParams.from_config(s.get("crf"), default_unary="labels" if band else "softmax")
               if s.get("use_crf") else None)

        def num(key: str) -> float | None:
            return None if s.get(key) is None else float(s[key])

        return cls(bg_threshold=num("bg_threshold"), bg_power=num("bg_power"), conf_fg=num("conf_fg"),
                   conf_bg=num("conf_bg"), min_confidence=num("min_confidence"), crf=crf)


def make_pseudo_mask(keys: np.ndarray, cams: np.ndarray, params: PseudoParams,
                     image: np.ndarray | None = None) -> np.ndarray:
    """A pseudo mask from one image's CAMs.

    Args:
        keys: [K] int foreground class indices (only the image's labelled classes: see restrict_to_labels).
        cams: [K, H, W] float in [0, 1].
        params: the decision rule.
        image: [H, W, 3] uint8 RGB (needed when ``params.crf`` is set).

    Returns:
        [H, W] uint8 with values in {0, 255} | keys.
    """
    if params.band:
        fg, _ = decide(keys, cams, background_score(cams, threshold=params.conf_fg), image, params.crf)
        bg, _ = decide(keys, cams, background_score(cams, threshold=params.conf_bg), image, params.crf)
        return combine_ignore_band(fg, bg)
    bg_score = background_score(cams, threshold=params.bg_threshold, power=params.bg_power)
    labels, confidence = decide(keys, cams, bg_score, image, params.crf)
    if params.min_confidence is not None:
        labels[confidence < params.min_confidence] = IGNORE_INDEX
    return labels
