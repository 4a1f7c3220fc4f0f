"""Biased-object removal (after MARS, Jo et al., ICCV 2023): find, without extra labels, the regions a class's
CAMs cover that are background wherever the class is absent, and remove them from that class's CAMs.

Model-agnostic: the input is any CAM artifact plus a cluster id per pixel (k-means of dense features of a frozen
backbone over the whole dataset, stages/debias.py); the output is CAMs in the same format. The pure functions
here do the counting and the decision, so they are tested on hand-made cluster maps.

For foreground class c and feature cluster j, over the dataset:

* ``share[c, j]``: of the pixels c's CAM covers (>= ``cam_threshold``) in images labelled c, the fraction in
  cluster j (j is a real part of what c's CAM claims);
* ``bg_rate[c, j]``: of the pixels of cluster j in images NOT labelled c, the fraction that no CAM covers (j is
  background where c is absent: rails in images without a train);
* ``presence[c, j]``: density of j in images without c over its density in images with c (j also exists
  without c; the object's own clusters are rare there, their ratio is near 0);
* ``free_rate[j]``: of all pixels of cluster j over the whole dataset, the fraction that no CAM covers (MARS's
  matching with the dataset's backgrounds: j is mostly background wherever it appears).

Cluster j is *biased* for c when c's CAM claims it (share >= ``min_share``) and it is background in the
dataset by either test: ``free_rate >= min_free_rate`` (the dataset-wide one), or ``bg_rate >= min_bg_rate``
and ``presence >= min_presence`` (the counter-examples where c is absent). Two tests because they fail in
opposite regimes: under a strong co-occurrence bias images without c that show its context are rare, so the
class-absent test has almost no evidence (on the VOC-regime benchmark it found no cluster), while a context
that c's CAM covers in most of the images it appears in is not mostly CAM-free dataset-wide. Its pixels are set
to 0 in c's CAM. The dataset-wide test never selects c's ``keep_top`` clusters of largest share (default 1): a
cluster that mixes the object with its surroundings can pass it by a hair (free_rate 0.505 on one training seed
of the benchmark), and removing a class's main cluster deletes the class; the class-absent test, which is direct
evidence, still may. See docs/stage_debias.md for the paper and
deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BiasStats", "BiasRule", "remove_biased"]


@dataclass(frozen=True)
class BiasRule:
    """Thresholds of the biased-cluster decision (see the module doc)."""

    cam_threshold: float = 0.3
    min_share: float = 0.01
    min_bg_rate: float = 0.5
    min_presence: float = 0.1
    min_free_rate: float = 0.5
    keep_top: int = 1


@dataclass
class BiasStats:
    """Pixel counts per (foreground class, cluster), accumulated image by image.

    Index 0 of the class axis is class 1 (foreground classes only); ``num_classes`` counts background too.
    """

    num_classes: int
    num_clusters: int
    fg_in: np.ndarray = field(init=False)  # [C-1, M] pixels of j under c's CAM, images with c
    pix_in: np.ndarray = field(init=False)  # [C-1, M] pixels of j in images with c
    free_in: np.ndarray = field(init=False)  # [C-1, M] CAM-free pixels of j in images with c
    total_all: np.ndarray = field(init=False)  # [M] pixels of j, all images
    total_free: np.ndarray = field(init=False)  # [M] CAM-free pixels of j, all images

    def __post_init__(self) -> None:
        k, m = self.num_classes - 1, self.num_clusters
        self.fg_in = np.zeros((k, m), np.int64)
        self.pix_in = np.zeros((k, m), np.int64)
        self.free_in = np.zeros((k, m), np.int64)
        self.total_all = np.zeros(m, np.int64)
        self.total_free = np.zeros(m, np.int64)

    def update(self, clusters: np.ndarray, keys: np.ndarray, cams: np.ndarray, cam_threshold: float) -> None:
        """Add one image. clusters: [H, W] int cluster id per pixel; keys: [K] labelled classes (1..C-1);
        cams: [K, H, W] in [0, 1] at the same size."""
        m = self.num_clusters
        q = clusters.astype(np.int64).ravel()
        hist = np.bincount(q, minlength=m)
        covered = (cams >= cam_threshold).reshape(len(keys), -1) if len(keys) else np.zeros((0, q.size), bool)
        free = ~covered.any(axis=0)
        hist_free = np.bincount(q[free], minlength=m)
        self.total_all += hist
        self.total_free += hist_free
        for k, c in enumerate(np.asarray(keys, np.int64)):
            self.fg_in[c - 1] += np.bincount(q[covered[k]], minlength=m)
            self.pix_in[c - 1] += hist
            self.free_in[c - 1] += hist_free

    def merge(self, other: "BiasStats") -> None:
        for name in ("fg_in", "pix_in", "free_in", "total_all", "total_free"):
            getattr(self, name).__iadd__(getattr(other, name))

    def measures(self) -> dict[str, np.ndarray]:
        """``share``, ``bg_rate``, ``presence``, ``free_rate``: [C-1, M] float64 (see the module doc; 0 where
        undefined; ``free_rate`` is the same for every class, repeated per row for a uniform shape)."""
        pix_out = self.total_all[None] - self.pix_in
        free_out = self.total_free[None] - self.free_in
        share = self.fg_in / np.maximum(self.fg_in.sum(1, keepdims=True), 1)
        bg_rate = free_out / np.maximum(pix_out, 1)
        dens_in = self.pix_in / np.maximum(self.pix_in.sum(1, keepdims=True), 1)
        dens_out = pix_out / np.maximum(pix_out.sum(1, keepdims=True), 1)
        presence = np.where(dens_in > 0, dens_out / np.maximum(dens_in, 1e-12), 0.0)
        free_rate = np.broadcast_to(self.total_free / np.maximum(self.total_all, 1), share.shape).copy()
        return {"share": share, "bg_rate": bg_rate, "presence": presence, "free_rate": free_rate}

    def biased(self, rule: BiasRule) -> np.ndarray:
        """[C-1, M] bool: cluster j is biased for class c (row c-1)."""
        m = self.measures()
        absent = (m["bg_rate"] >= rule.min_bg_rate) & (m["presence"] >= rule.min_presence)
        wide = m["free_rate"] >= rule.min_free_rate
        if rule.keep_top > 0:  # the indirect test never takes a class's largest clusters (its object, usually)
            top = np.argsort(-m["share"], axis=1, kind="stable")[:, :rule.keep_top]
            np.put_along_axis(wide, top, False, axis=1)
        return (m["share"] >= rule.min_share) & (absent | wide)


def remove_biased(keys: np.ndarray, cams: np.ndarray, clusters: np.ndarray, biased: np.ndarray) -> np.ndarray:
    """CAMs with each class's biased clusters zeroed. keys [K]; cams [K, H, W]; clusters [H, W] int;
    biased [C-1, M] bool. Returns float32 [K, H, W] (<= cams everywhere)."""
    out = np.asarray(cams, np.float32).copy()
    q = clusters.astype(np.int64)
    for k, c in enumerate(np.asarray(keys, np.int64)):
        out[k][biased[c - 1][q]] = 0.0
    return out
