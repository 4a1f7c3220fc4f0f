"""Fully connected (dense) CRF over per-pixel class probabilities, with pydensecrf2.

Why: CAMs are blurry and stop short of object boundaries. A dense CRF (Krähenbühl & Koltun, 2011) sharpens
them with two pairwise terms: a Gaussian kernel over pixel positions (smoothness, removes speckle) and a
bilateral kernel over positions and RGB colours (pixels that are close and alike take the same label).

The energy is built and minimised by pydensecrf2 (import name ``pydensecrf``), never by a hand-made copy. It is
compiled from source at install time; when it cannot be imported, :func:`require_pydensecrf` raises a
one-line :class:`~wsss.errors.WSSSError` naming the fix. There is deliberately no fallback: a silent switch to
"no CRF" would change results without anyone noticing.

Parameter defaults are those of IRN's ``crf_inference_label`` (Ahn et al., 2019): Gaussian ``sxy=3,
compat=3``; bilateral ``sxy=50, srgb=5, compat=10``; 10 mean-field iterations. :data:`PRESETS` also lists
PSA's (bilateral ``sxy=80, srgb=13``), CLIP-ES's (Gaussian ``sxy=1, compat=3``; bilateral ``sxy=67,
srgb=3, compat=4``) and ToCo's two (pseudo labels: Gaussian ``3/3``, bilateral ``36/3/4``; segmentation
inference: Gaussian ``1/1``, bilateral ``121/5/4``).

The unary (``CRFParams.unary``) comes in two kinds, and the choice matters more than the kernels:

* ``'softmax'``: ``-log p`` of the given probabilities (pydensecrf's ``unary_from_softmax``). Near the decision
  threshold the two best labels have almost the same energy, so the pairwise terms decide there, and the
  bilateral term (weight 10 in IRN's setting) eats into thin or low-contrast foreground;
* ``'labels'``: the hard decision ``argmax p`` with confidence ``gt_prob`` on the chosen label and
  ``(1 - gt_prob) / (C - 1)`` on each other one (pydensecrf's ``unary_from_labels`` with
  ``zero_unsure=False``), IRN's choice. Every pixel gets the same, fairly strong, vote for its own decision,
  so the CRF only moves boundaries where the image says so, but it also keeps a leakage halo that sits just
  above the threshold, which 'softmax' would let the bilateral term remove. Which one wins depends on how the
  CAMs are wrong (docs/benchmarks.md, *Fidelity to the references*: labels +2 to +3 mIoU on blurred-mask CAMs of
  coco128 photos, -3 to -6 on CAMs that leak above the threshold; issue 14 measured 47.6 vs 39.6 on coco128).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping

import numpy as np

from wsss.errors import WSSSError

INSTALL_HINT = ("pip install pydensecrf2 (builds from source: needs a C++ compiler and the Python headers, "
                "e.g. apt-get install g++ python3-dev; pip fetches Cython<3 for the build itself)")

#: Unary probabilities are clipped to this floor before ``-log``: log(0) would make a label impossible for good.
PROB_FLOOR = 1e-5
#: The two unaries (see the module doc).
UNARIES = ("softmax", "labels")


def require_pydensecrf() -> ModuleType:
    """``pydensecrf.densecrf``, or a one-line WSSSError saying how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:  # also catches a broken build (undefined symbol in the .so)
        raise WSSSError(f"dense CRF needs pydensecrf2, which cannot be imported ({e}); fix: {INSTALL_HINT}") from e
    return dcrf


@dataclass(frozen=True)
class CRFParams:
    """Dense CRF settings. ``*_sxy`` in pixels, ``bilateral_srgb`` in RGB units (0..255), ``*_compat`` = Potts
    weights of the two kernels; ``unary`` 'softmax' or 'labels' and, for 'labels', ``gt_prob`` = the
    probability the hard decision is given (see the module doc)."""

    n_iter: int = 10
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0
    unary: str = "softmax"
    gt_prob: float = 0.7

    def __post_init__(self) -> None:
        if self.unary not in UNARIES:
            raise WSSSError(f"CRF unary must be one of {list(UNARIES)}, got '{self.unary}'")
        if not 0.0 < self.gt_prob < 1.0:
            raise WSSSError(f"CRF gt_prob must be in (0, 1), got {self.gt_prob}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, default_unary: str = "softmax") -> "CRFParams":
        """Build from a config dict; unknown keys are an error (a typo must not silently use a default).

        ``default_unary`` is used when the section has no ``unary`` (or ``unary=None``): the caller knows
        which path it is on (IRN's two-threshold seeds / ignore band use 'labels').
        """
        section = dict(section or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise WSSSError(f"unknown CRF parameter(s) {unknown}; expected some of {sorted(names)}")
        unary = section.pop("unary", None) or default_unary
        params = cls(unary=str(unary), **{k: (int(v) if k == "n_iter" else float(v)) for k, v in section.items()})
        if params.n_iter < 1:
            raise WSSSError(f"CRF n_iter must be >= 1, got {params.n_iter}")
        for f in dataclasses.fields(cls):
            if f.name not in ("n_iter", "unary") and getattr(params, f.name) < 0:
                raise WSSSError(f"CRF {f.name} must be >= 0, got {getattr(params, f.name)}")
        return params


#: Published settings, for comparison (benchmarks/bench_crf.py); the library's kernel defaults are IRN's, its unary
#: default is 'softmax' (the ignore-band / seed paths choose 'labels', see wsss.refine.pseudo).
PRESETS: dict[str, CRFParams] = {
    "irn": CRFParams(unary="labels"),
    "psa": CRFParams(gauss_sxy=3, gauss_compat=3, bilateral_sxy=80, bilateral_srgb=13, bilateral_compat=10),
    "clip_es": CRFParams(gauss_sxy=1, gauss_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4),
    # ToCo (Ru et al., 2023), tools/infer_cam_crf_label.py (pseudo labels) and tools/infer_seg_voc.py
    # (segmentation inference); both feed softmax probabilities.
    "toco": CRFParams(gauss_sxy=3, gauss_compat=3, bilateral_sxy=36, bilateral_srgb=3, bilateral_compat=4),
    "toco_seg": CRFParams(gauss_sxy=1, gauss_compat=1, bilateral_sxy=121, bilateral_srgb=5, bilateral_compat=4),
}


def crf_unary(probs: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """The unary energy pydensecrf minimises: [C, H * W] float32, C-contiguous.

    probs: [C, H, W] per-pixel probabilities (C >= 2). 'softmax': ``-log max(p, PROB_FLOOR)``; 'labels': the
    energy of the hard decision ``argmax_c p`` (ties go to the lowest channel, as numpy's argmax), i.e.
    ``-log gt_prob`` on the chosen label and ``-log((1 - gt_prob) / (C - 1))`` on the others.
    """
    params = params or CRFParams()
    from pydensecrf.utils import unary_from_labels, unary_from_softmax

    c = probs.shape[0]
    if params.unary == "labels":
        labels = probs.argmax(axis=0).astype(np.int64)
        u = unary_from_labels(labels, c, gt_prob=params.gt_prob, zero_unsure=False)
    else:
        u = unary_from_softmax(probs, clip=PROB_FLOOR)
    return np.ascontiguousarray(u, dtype=np.float32)


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """Refine per-pixel label probabilities with a dense CRF.

    Args:
        image: [H, W, 3] uint8 RGB, the picture the bilateral kernel compares colours on.
        probs: [C, H, W] float, non-negative, summing to 1 over C at each pixel (softmax-like). Labels are
            whatever the caller's channels mean (e.g. background + the image's classes).
        params: CRF settings (default: IRN's kernels, softmax unary). With ``unary='labels'`` only the
            argmax of ``probs`` enters the energy.

    Returns:
        [C, H, W] float32 posterior marginals (mean-field), summing to 1 over C.
    """
    params = params or CRFParams()
    probs = np.asarray(probs, dtype=np.float32)
    image = np.asarray(image)
    if probs.ndim != 3:
        raise ValueError(f"probs must be [C, H, W], got {probs.shape}")
    c, h, w = probs.shape
    if image.shape != (h, w, 3):
        raise ValueError(f"image must be [{h}, {w}, 3] to match probs {probs.shape}, got {image.shape}")
    if c == 1:  # one label: nothing to decide, and pydensecrf's Potts term is undefined
        return np.ones_like(probs)
    dcrf = require_pydensecrf()
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(crf_unary(probs, params))
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=params.bilateral_compat)
    q = np.asarray(crf.inference(params.n_iter), dtype=np.float32)
    return q.reshape(c, h, w)
