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
PSA's (bilateral ``sxy=80, srgb=13``) and CLIP-ES's (Gaussian ``sxy=1, compat=3``; bilateral ``sxy=67,
srgb=3, compat=4``).
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
    weights of the two kernels."""

    n_iter: int = 10
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "CRFParams":
        """Build from a config dict; unknown keys are an error (a typo must not silently use a default)."""
        section = dict(section or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise WSSSError(f"unknown CRF parameter(s) {unknown}; expected some of {sorted(names)}")
        params = cls(**{k: (int(v) if k == "n_iter" else float(v)) for k, v in section.items()})
        if params.n_iter < 1:
            raise WSSSError(f"CRF n_iter must be >= 1, got {params.n_iter}")
        for f in dataclasses.fields(cls):
            if f.name != "n_iter" and getattr(params, f.name) < 0:
                raise WSSSError(f"CRF {f.name} must be >= 0, got {getattr(params, f.name)}")
        return params


#: Published settings, for comparison (benchmarks/bench_crf.py); the library default is IRN's.
PRESETS: dict[str, CRFParams] = {
    "irn": CRFParams(),
    "psa": CRFParams(gauss_sxy=3, gauss_compat=3, bilateral_sxy=80, bilateral_srgb=13, bilateral_compat=10),
    "clip_es": CRFParams(gauss_sxy=1, gauss_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4),
}


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams | None = None) -> np.ndarray:
    """Refine per-pixel label probabilities with a dense CRF.

    Args:
        image: [H, W, 3] uint8 RGB, the picture the bilateral kernel compares colours on.
        probs: [C, H, W] float, non-negative, summing to 1 over C at each pixel (softmax-like). Labels are
            whatever the caller's channels mean (e.g. background + the image's classes).
        params: CRF settings (default: IRN's).

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
    from pydensecrf.utils import unary_from_softmax

    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=PROB_FLOOR)))
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=params.bilateral_compat)
    q = np.asarray(crf.inference(params.n_iter), dtype=np.float32)
    return q.reshape(c, h, w)
