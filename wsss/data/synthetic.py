"""A synthetic WSSS dataset, deterministic by seed, written in the VOC layout.

Why: tests and the README demo need a dataset that (a) generates in seconds on one core, (b) has exact masks
so every refinement can be measured, and (c) carries the difficulties WSSS exists to overcome:

* each foreground class has its own shape family AND texture/colour statistics, with intra-class variation
  (size, aspect, rotation, colour jitter, texture scale/orientation); classes share colours pairwise (red disc
  vs red star, blue square vs blue cross, yellow triangle vs yellow crescent), so no single colour separates
  them and the classifier must use shape and texture;
* textured backgrounds of several kinds ('grass', 'water', 'road', 'sky', 'sand', 'brick') plus untextured
  'distractor' blobs (random colours, labelled background) that punish 'any blob is an object';
* co-occurrence bias: every class has its 'own' background kind and each object lies on it with probability
  ``bias`` (the 'train on rails' confound: a classifier can score 'triangle' from water, so CAMs leak into the
  background);
* 1-3 objects per image that may occlude each other (each keeps at least 40 % of its area visible);
* soft anti-aliased, blurred object edges, illumination gradients, colour casts and pixel noise.

Masks are exact: a pixel belongs to the last object whose (blurred) alpha there is >= 0.5, i.e. to what was
painted on top; occluded parts belong to the occluder. Image ``i`` of a split is drawn from its own generator
``default_rng([seed, split_code, i])``, so outputs are byte-identical for the same seed and a split's first
images do not change when more are requested.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from wsss.data.palette import save_mask
from wsss.data.voc import labels_from_mask

log = logging.getLogger(__name__)

BACKGROUNDS: tuple[str, ...] = ("grass", "water", "road", "sky", "sand", "brick")
META_FILE = "synthetic.json"
_SPLIT_CODES = {"train": 0, "val": 1, "ood": 2}
#: The split of context-only images (``num_ood``): backgrounds without any object, labels empty.
OOD_SPLIT = "ood"


@dataclass(frozen=True)
class ClassStyle:
    """How one foreground class looks: shape family, texture, two base RGB colours, own background kind.

    ``period`` is the texture scale range in pixels at image size 128 (scaled with the image size).
    """

    name: str
    texture: str
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    background: str
    period: tuple[float, float]


CLASS_STYLES: tuple[ClassStyle, ...] = (
    ClassStyle("disc", "spots", (200, 55, 45), (245, 160, 70), "grass", (6.0, 10.0)),
    ClassStyle("square", "checker", (45, 75, 175), (160, 185, 230), "road", (5.0, 9.0)),
    ClassStyle("triangle", "stripes", (225, 200, 50), (110, 75, 35), "water", (5.0, 8.0)),
    ClassStyle("star", "marble", (190, 45, 70), (115, 45, 150), "sky", (10.0, 18.0)),
    ClassStyle("ring", "stripes", (70, 160, 70), (25, 85, 35), "sand", (3.5, 5.5)),
    ClassStyle("cross", "spots", (45, 140, 195), (225, 230, 240), "brick", (4.0, 7.0)),
    ClassStyle("crescent", "checker", (230, 210, 90), (120, 120, 120), "grass", (3.5, 6.0)),
    ClassStyle("hexagon", "stripes", (200, 60, 170), (240, 240, 240), "water", (8.0, 12.0)),
)
MAX_CLASSES = len(CLASS_STYLES)


# ----------------------------------------------------------------------------------------------- primitives
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) float32 [size, size] pixel-centre coordinates."""
    r = np.arange(size, dtype=np.float32)
    return np.meshgrid(r, r, indexing="ij")


def smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int] | int) -> np.ndarray:
    """[size, size] float32 value noise in [0, 1]: a (cy+1, cx+1) random grid upsampled bicubically."""
    cy, cx = (cells, cells) if isinstance(cells, int) else cells
    g = rng.random((max(cy, 1) + 1, max(cx, 1) + 1), dtype=np.float32)
    n = cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(n.min()), float(n.max())
    return (n - lo) / max(hi - lo, 1e-6)


def _c3(p: np.ndarray) -> np.ndarray:
    """[H, W] -> [H, W, 3] float32 copy (numpy broadcasting over a trailing axis of 3 is ~10x slower)."""
    p = np.asarray(p, np.float32)
    return cv2.merge([p, p, p])


def _mix(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours a, b ([3]) by weight p ([H, W] in [0, 1]) -> [H, W, 3] float32."""
    p = np.asarray(p, np.float32)
    a = np.asarray(a, np.float32)
    d = np.asarray(b, np.float32) - a
    return cv2.merge([a[c] + d[c] * p for c in range(3)])


def _blend(img: np.ndarray, top: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paint ``top`` [H, W, 3] over ``img`` [H, W, 3] with coverage ``alpha`` [H, W] in [0, 1]."""
    return img + (top - img) * _c3(alpha)


def _scale3(img: np.ndarray, v: Iterable[float]) -> np.ndarray:
    """[H, W, 3] float32 times a per-channel [3] vector (cv2 scalar: ~4x faster than numpy broadcasting)."""
    v = [float(x) for x in v]
    return cv2.multiply(img, (v[0], v[1], v[2], 0.0))


def _add3(img: np.ndarray, v: Iterable[float]) -> np.ndarray:
    """[H, W, 3] float32 plus a per-channel [3] vector."""
    v = [float(x) for x in v]
    return cv2.add(img, (v[0], v[1], v[2], 0.0))


def _jitter(rng: np.random.Generator, color: Iterable[float], sd: float) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0.0, sd, 3).astype(np.float32), 0, 255)


# ----------------------------------------------------------------------------------------------- backgrounds
def render_background(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A [size, size, 3] float32 (0..255) texture of one background kind."""
    s = size / 128.0
    yy, xx = _grid(size)
    if kind == "grass":
        blades = smooth_noise(rng, size, (max(size // 24, 2), max(size // 2, 4)))  # vertical streaks
        patches = smooth_noise(rng, size, 3)
        img = _mix(_jitter(rng, (40, 95, 35), 10), _jitter(rng, (115, 170, 70), 10), 0.65 * blades + 0.35 * patches)
    elif kind == "water":
        period = rng.uniform(7, 13) * s
        warp = smooth_noise(rng, size, 3) * rng.uniform(4, 7)
        p = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + warp + 0.05 * xx)
        img = _mix(_jitter(rng, (25, 70, 130), 10), _jitter(rng, (80, 150, 200), 10), p)
        img += _c3(p ** 6) * 60.0  # glints on wave crests
    elif kind == "road":
        g = rng.uniform(80, 125)
        fine = cv2.GaussianBlur(rng.normal(0, 14, (size, size)).astype(np.float32), (0, 0), 0.6)
        img = _c3(g + fine + 25 * (smooth_noise(rng, size, 4) - 0.5))
        img = _add3(img, (0, 0, 5))
        if rng.random() < 0.6:  # dashed lane marking
            th = rng.uniform(0, np.pi)
            u = (xx - rng.uniform(0, size)) * np.cos(th) + (yy - rng.uniform(0, size)) * np.sin(th)
            v = -(xx * np.sin(th)) + yy * np.cos(th)
            line = (np.abs(u) < rng.uniform(1.5, 3) * s) & (np.sin(2 * np.pi * v / (20 * s)) > 0)
            lane = (235, 235, 225) if rng.random() < 0.5 else (230, 195, 60)
            img[line] = lane
    elif kind == "sky":
        img = _mix(_jitter(rng, (90, 140, 215), 10), _jitter(rng, (175, 205, 240), 8), yy / size)
        clouds = np.clip((smooth_noise(rng, size, 5) - rng.uniform(0.5, 0.65)) * 4.0, 0, 1)
        img = _blend(img, _mix((240, 240, 245), (250, 250, 252), clouds), clouds)
    elif kind == "sand":
        period = rng.uniform(6, 10) * s
        th = rng.uniform(0, np.pi)
        u = xx * np.cos(th) + yy * np.sin(th)
        p = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + 3.0 * smooth_noise(rng, size, 3))
        img = _mix(_jitter(rng, (190, 165, 115), 8), _jitter(rng, (228, 208, 165), 8), 0.6 * p)
        img += _c3(rng.normal(0, 9, (size, size)))
    elif kind == "brick":
        h = rng.uniform(7, 11) * s
        w = h * rng.uniform(2.0, 2.6)
        row = np.floor(yy / h)
        xo = xx + (row % 2) * w / 2
        col = np.floor(xo / w)
        shade = rng.normal(0, 18, (int(size / h) + 2, int(size / w) + 3)).astype(np.float32)
        img = _add3(_c3(shade[row.astype(int), col.astype(int)]), _jitter(rng, (150, 65, 45), 12))
        mortar = ((yy % h) < 1.3 * s) | ((xo % w) < 1.3 * s)
        img[mortar] = _jitter(rng, (190, 185, 175), 8)
    else:
        raise ValueError(f"unknown background kind '{kind}'; expected one of {BACKGROUNDS}")
    return np.asarray(img, np.float32)


# ----------------------------------------------------------------------------------------------- objects
def _unit_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """[N, 2] vertices (x, y) of a shape of radius ~1 centred at 0, with per-instance jitter."""
    if shape == "square":
        p = np.float32([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * 0.8
    elif shape == "triangle":
        a = np.deg2rad([90, 210, 330]) + rng.uniform(-0.15, 0.15, 3)
        p = np.stack([np.cos(a), np.sin(a)], 1) * rng.uniform(0.9, 1.1, (3, 1))
    elif shape == "star":
        a = np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.4, 0.5))
        p = np.stack([np.cos(a) * rad, np.sin(a) * rad], 1)
    elif shape == "cross":
        w = rng.uniform(0.3, 0.4)
        p = np.float32([(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w),
                        (-1, w), (-w, w), (-w, 1)])
    elif shape == "hexagon":
        a = np.arange(6) * np.pi / 3
        p = np.stack([np.cos(a), np.sin(a)], 1)
    else:
        raise ValueError(f"'{shape}' is not a polygon shape")
    return np.asarray(p, np.float32) * np.float32([rng.uniform(0.8, 1.2), 1.0])  # aspect jitter


def shape_alpha(shape: str, rng: np.random.Generator, size: int, cx: float, cy: float, r: float,
                theta: float, blur: float) -> np.ndarray:
    """[size, size] float32 coverage in [0, 1] of one object: anti-aliased raster + Gaussian soft edge."""
    canvas = np.zeros((size, size), np.uint8)
    f = 16.0  # cv2 drawing with shift=4: sub-pixel coordinates
    c = (int(round(cx * f)), int(round(cy * f)))
    deg = float(np.rad2deg(theta))
    if shape in ("disc", "ring", "crescent"):
        ax = (int(round(r * f)), int(round(r * rng.uniform(0.8, 1.0) * f)))
        cv2.ellipse(canvas, c, ax, deg, 0, 360, 255, -1, cv2.LINE_AA, 4)
        if shape == "ring":
            k = rng.uniform(0.45, 0.6)
            cv2.ellipse(canvas, c, (int(ax[0] * k), int(ax[1] * k)), deg, 0, 360, 0, -1, cv2.LINE_AA, 4)
        elif shape == "crescent":
            d = r * rng.uniform(0.4, 0.55)
            c2 = (int(round((cx + d * np.cos(theta)) * f)), int(round((cy + d * np.sin(theta)) * f)))
            cv2.ellipse(canvas, c2, (int(ax[0] * 0.85), int(ax[1] * 0.85)), deg, 0, 360, 0, -1, cv2.LINE_AA, 4)
    else:
        p = _unit_polygon(shape, rng)
        rot = np.float32([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        p = p @ rot.T * r + np.float32([cx, cy])
        cv2.fillPoly(canvas, [np.round(p * f).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = canvas.astype(np.float32) / 255.0
    return cv2.GaussianBlur(alpha, (0, 0), blur) if blur > 0 else alpha


def render_texture(style: ClassStyle, rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float32 (0..255) texture of one object instance (colours and scale jittered)."""
    s = size / 128.0
    yy, xx = _grid(size)
    period = rng.uniform(*style.period) * s
    th = rng.uniform(0, np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    v = -xx * np.sin(th) + yy * np.cos(th)
    if style.texture == "stripes":
        p = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    elif style.texture == "checker":
        p = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        p = cv2.GaussianBlur(p, (0, 0), 0.7)
    elif style.texture == "spots":
        n = smooth_noise(rng, size, max(int(size / period), 2))
        p = 1.0 / (1.0 + np.exp(-(n - 0.55) * 18.0))
    elif style.texture == "marble":
        p = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + 6.0 * smooth_noise(rng, size, 4))
    else:
        raise ValueError(f"unknown texture '{style.texture}'")
    gain = rng.uniform(0.8, 1.15)
    return _mix(_jitter(rng, style.color_a, 18) * gain, _jitter(rng, style.color_b, 18) * gain, p)


def _distractor(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An irregular blob in random colours, labelled background: (alpha [H, W], texture [H, W, 3])."""
    yy, xx = _grid(size)
    r = size * rng.uniform(0.1, 0.2)
    cx, cy = rng.uniform(0, size, 2)
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
    blob = np.clip((smooth_noise(rng, size, max(size // 16, 2)) * 0.9 + 0.55 - d) * 5.0, 0, 1)
    tex = _mix(rng.uniform(30, 230, 3), rng.uniform(30, 230, 3), smooth_noise(rng, size, max(size // 12, 2)))
    return cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 0.8), tex


# ----------------------------------------------------------------------------------------------- one sample
def sample_layout(rng: np.random.Generator, num_classes: int, bias: float, min_objects: int = 1,
                  max_objects: int = 3) -> tuple[str, list[int]]:
    """Background kind and the 0-based classes of the objects to draw, with the co-occurrence bias.

    The background is uniform over BACKGROUNDS; each object is, with probability ``bias``, one of the
    classes that own this background (uniformly), else one of the other classes. With one owner per
    background (the default 6 classes) every object therefore lies on its class's own background with
    probability exactly ``bias``; backgrounds that own no class get uniformly drawn classes.
    """
    kind = str(rng.choice(BACKGROUNDS))
    owners = [c for c in range(num_classes) if CLASS_STYLES[c].background == kind]
    others = [c for c in range(num_classes) if CLASS_STYLES[c].background != kind]
    classes = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        pool = owners if owners and (not others or rng.random() < bias) else (others or owners)
        classes.append(int(pool[int(rng.integers(len(pool)))]))
    return kind, classes


def render_sample(rng: np.random.Generator, size: int = 128, num_classes: int = 6, bias: float = 0.8,
                  min_objects: int = 1, max_objects: int = 3, distractor_prob: float = 0.5,
                  min_visible: float = 0.4, photometric: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Draw one image: (image [size, size, 3] uint8 RGB, mask [size, size] uint8, background kind).

    ``num_classes`` counts foreground classes (mask values 1..num_classes). The background kind and the
    objects' classes follow ``sample_layout`` (each on its own background kind with probability ``bias``).
    ``photometric=False`` skips the illumination gradient, colour cast, pixel noise and final blur (tests use
    it to check that every mask pixel shows what was painted on top).
    """
    s = size / 128.0
    kind, classes = sample_layout(rng, num_classes, bias, min_objects, max_objects)
    styles = CLASS_STYLES[:num_classes]
    img = _background_with_distractors(kind, rng, size, distractor_prob)

    inst = np.full((size, size), -1, np.int16)  # which placed object is on top (-1: background)
    areas: list[int] = []
    placed: list[int] = []
    min_px = max(int(0.0025 * size * size), 8)
    for cls in classes:
        for _ in range(20):
            r = size * rng.uniform(0.15, 0.27)
            cx, cy = rng.uniform(0.55 * r, size - 0.55 * r, 2)
            alpha = shape_alpha(styles[cls].name, rng, size, cx, cy, r, rng.uniform(0, 2 * np.pi),
                                rng.uniform(0.5, 1.1) * s)
            on = alpha >= 0.5
            area = int(on.sum())
            if area < min_px:
                continue
            if placed:
                visible = np.bincount(inst[~on & (inst >= 0)], minlength=len(placed))
                if any(visible[j] < max(min_visible * areas[j], min_px) for j in range(len(placed))):
                    continue  # would hide too much of an earlier object: try another placement
            tex = render_texture(styles[cls], rng, size)
            img = _blend(img, tex, alpha)
            inst[on] = len(placed)
            areas.append(area)
            placed.append(int(cls) + 1)
            break

    image = _finish(img, rng, size, photometric)
    lut = np.asarray([0] + placed, np.uint8)
    mask = lut[inst.astype(np.int64) + 1]
    return image, mask, kind


def _background_with_distractors(kind: str, rng: np.random.Generator, size: int,
                                 distractor_prob: float) -> np.ndarray:
    """[size, size, 3] float32: a background of ``kind`` with, with probability ``distractor_prob``, 1-2 blobs."""
    img = render_background(kind, rng, size)
    if rng.random() < distractor_prob:
        for _ in range(int(rng.integers(1, 3))):
            a, tex = _distractor(rng, size)
            img = _blend(img, tex, a)
    return img


def _finish(img: np.ndarray, rng: np.random.Generator, size: int, photometric: bool) -> np.ndarray:
    """Illumination gradient, colour cast, noise and blur (when ``photometric``), rounded to uint8."""
    if photometric:
        img *= _c3(0.8 + 0.4 * smooth_noise(rng, size, 2))  # illumination gradient
        img = _scale3(img, rng.uniform(0.92, 1.08, 3))  # colour cast
        img += rng.normal(0, rng.uniform(2, 7), img.shape).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), 0.5)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def context_kind(index: int, num_classes: int) -> str:
    """The background kind of context-only image ``index``: the own background of class ``index % num_classes``
    (0-based), so every class's context appears equally often."""
    return CLASS_STYLES[index % num_classes].background


def render_context(rng: np.random.Generator, kind: str, size: int = 128, distractor_prob: float = 0.5,
                   photometric: bool = True) -> np.ndarray:
    """A context-only image (W-OoD's out-of-distribution data): [size, size, 3] uint8 RGB of background
    ``kind`` with the same distractors and photometric effects as :func:`render_sample`, and no object (the
    'rails without a train' a biased classifier scores positive)."""
    return _finish(_background_with_distractors(kind, rng, size, distractor_prob), rng, size, photometric)


# ----------------------------------------------------------------------------------------------- dataset
def _summary(split_ids: dict[str, list[str]], labels: dict[str, list[int]], kinds: dict[str, str],
             pixel_counts: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    styles = CLASS_STYLES[: len(names) - 1]
    out: dict[str, Any] = {}
    for split, ids in split_ids.items():
        images = [0] * len(names)
        on_own = [0] * len(names)
        for i in ids:
            for c in labels[i]:
                images[c] += 1
                on_own[c] += kinds[i] == styles[c - 1].background
        px = pixel_counts[split]
        out[split] = {
            "images": len(ids),
            "images_per_class": {names[c]: images[c] for c in range(1, len(names))},
            "pixel_fraction": {names[c]: round(float(px[c] / max(px.sum(), 1)), 4) for c in range(len(names))},
            "on_own_background": {names[c]: round(on_own[c] / max(images[c], 1), 3) for c in range(1, len(names))},
            "classes_per_image": {str(k): sum(1 for i in ids if len(labels[i]) == k) for k in range(len(names))},
        }
    return out


def generate_synthetic(out: str | Path, num_train: int, num_val: int, seed: int, size: int = 128,
                       num_classes: int = 6, bias: float = 0.8, min_objects: int = 1, max_objects: int = 3,
                       distractor_prob: float = 0.5, image_format: str = "png",
                       progress: Callable[[Iterable], Iterable] | None = None, num_ood: int = 0) -> dict[str, Any]:
    """Write a synthetic VOC-layout dataset to ``out`` and return its summary (also in ``synthetic.json``).

    Writes JPEGImages/<id>.<png|jpg>, SegmentationClass/<id>.png (VOC palette), ImageSets/Segmentation/
    {train,val}.txt, classes.txt (background + ``num_classes`` shape names), labels.json (classes present in
    each mask) and synthetic.json (parameters, background kind of every image, summary). Ids are
    ``train_00000`` / ``val_00000``. An ``out`` that holds an earlier synthetic dataset is replaced; any other
    non-empty folder is refused.

    ``num_ood`` > 0 adds split ``ood`` (ids ``ood_00000``...): context-only images, image ``i`` on the own
    background of class ``i % num_classes`` (:func:`context_kind`) with no object, all-background masks and
    empty labels: the out-of-distribution data of W-OoD (train_cls.wood).
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if seed < 0 or num_train < 0 or num_val < 0 or num_ood < 0:
        raise ValueError(f"seed, num_train, num_val and num_ood must be >= 0, got {seed}, {num_train}, {num_val}, "
                         f"{num_ood}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got '{image_format}'")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / META_FILE).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {META_FILE}; refusing to write into it")
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / META_FILE).unlink()
    image_dir, mask_dir, set_dir = out / "JPEGImages", out / "SegmentationClass", out / "ImageSets" / "Segmentation"
    for d in (image_dir, mask_dir, set_dir):
        d.mkdir(parents=True, exist_ok=True)

    names = ["background"] + [st.name for st in CLASS_STYLES[:num_classes]]
    counts = [("train", num_train), ("val", num_val)] + ([(OOD_SPLIT, num_ood)] if num_ood else [])
    jobs = [(split, i) for split, n in counts for i in range(n)]
    labels: dict[str, list[int]] = {}
    kinds: dict[str, str] = {}
    split_ids: dict[str, list[str]] = {split: [] for split, _ in counts}
    pixel_counts = {k: np.zeros(len(names), np.int64) for k in split_ids}
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if image_format == "png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
    for split, i in (progress(jobs) if progress is not None else jobs):
        rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], i])
        if split == OOD_SPLIT:
            kind = context_kind(i, num_classes)
            image = render_context(rng, kind, size, distractor_prob)
            mask = np.zeros((size, size), np.uint8)
        else:
            image, mask, kind = render_sample(rng, size, num_classes, bias, min_objects, max_objects,
                                              distractor_prob)
        image_id = f"{split}_{i:05d}"
        ok, buf = cv2.imencode(f".{image_format}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"could not encode {image_id}")
        (image_dir / f"{image_id}.{image_format}").write_bytes(buf.tobytes())
        save_mask(mask_dir / f"{image_id}.png", mask)
        labels[image_id] = labels_from_mask(mask)
        kinds[image_id] = kind
        split_ids[split].append(image_id)
        pixel_counts[split] += np.bincount(mask.ravel(), minlength=256)[: len(names)]

    for split, ids in split_ids.items():
        (set_dir / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (out / "classes.txt").write_text("\n".join(names) + "\n")
    (out / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    summary = _summary(split_ids, labels, kinds, pixel_counts, names)
    meta = {
        "params": dict(num_train=num_train, num_val=num_val, seed=seed, size=size, num_classes=num_classes, bias=bias,
                       min_objects=min_objects, max_objects=max_objects, distractor_prob=distractor_prob,
                       image_format=image_format, **({"num_ood": num_ood} if num_ood else {})),
        "classes": [asdict(st) for st in CLASS_STYLES[:num_classes]],
        "backgrounds": kinds,
        "summary": summary,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")  # written last: marks complete
    log.info("synthetic dataset: %d train + %d val images of %dx%d in %s", num_train, num_val, size, size, out)
    return summary
