"""Context bias on the VOC-regime synthetic benchmark: W-OoD, biased-object removal and OCR, alone and composed.

    python benchmarks/context_bias.py [--quality-root work_dirs/quality_synthetic] [--seeds 0,1,2]
        [--sweep 0.0,0.5,0.95] [--sweep-seeds 0] [--no-chain] [--skip wood,ocr]
        [--wood-variants adv,w1] [--variant-seeds 0] [--work-root work_dirs/context_bias]
        [--threads N] [--long] [--report-only]

The benchmark is the quality benchmark's (configs/synthetic/quality.py: 208 px, stride 8, 1-3 objects,
EfficientNet-Lite0 from ImageNet, co-occurrence bias 0.8 by default). At the default bias its three training
seeds are reused from ``--quality-root`` (``benchmarks/quality_synthetic.py`` runs them; missing stages are
run here): the seed CAMs there are the baseline, and the extra stages are written beside that chain:

* ``debias``: biased-object removal on the seed CAMs (stages/debias.py; lite0 features, 16 clusters);
* ``wood``: the classifier retrained with W-OoD (train_cls.wood: 60 context-only images of the same generator,
  30 mined from iteration 40) in ``<work-root>/bias_0.80/seed<s>_wood``, then its CAMs, and debias on them;
* where the seeds' false positives fall (near the object, on the class's context, elsewhere) and the precision
  that removing every context false positive would give (wsss/eval/false_positives.py), per method;
* chain (``--no-chain`` skips it): OCR alone (train_seg.ocr on the chain's own pseudo masks) and the
  composition debias -> random walk (the chain's affinity net) -> CRF pseudo masks at the walk threshold chosen
  on train -> DeepLabV3+ with OCR, scored on the held-out val split against the same chain without them; unless
  ``--skip wood``, also W-OoD + debias through the same steps in the W-OoD work dir, with an affinity net trained
  on the W-OoD CAMs (same train/val images, so its val scores pair with the plain chain's).

``--long`` also trains the composition's network for the bound's 1440 iterations, paired with the quality chain's
``train_seg_long``. ``--sweep`` biases run the seeds part (baseline, debias, W-OoD) on freshly generated data of
that bias with ``--sweep-seeds`` training seeds, in ``<work-root>/bias_<b>/``. Seeds are scored on the training
images (the WSSS protocol) at the configured background threshold 0.5; ORACLE sweeps it on ground truth (an upper
bound, not a result). Foreground precision / recall are means over the classes. Every figure over seeds is mean ±
sample std; gains are paired by seed and "not shown" within twice their spread. No setting was chosen on val.
Complete stages are reused, so a killed run resumes and ``--report-only`` prints the tables from disk.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the stages of this checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from wsss.config import load_config  # noqa: E402

log = logging.getLogger("context_bias")

QUALITY = "configs/synthetic/quality.py"
DEFAULT_BIAS = 0.8
NUM_OOD = 60
#: debias on the quality regime: the classifier's own ImageNet backbone frozen (stride 16 at twice the size: an
#: effective stride 8, the CAMs' grid), CAM coverage at the seeds' background threshold.
DEBIAS = dict(backbone=dict(arch="tf_efficientnet_lite0", weights="efficientnet-lite0-package", output_stride=16),
              scale=2.0, clusters=16, max_samples=100000, cam_threshold=0.5, bg_threshold=0.5)
#: W-OoD: the hardest half of the context-only images, mined once a third of the schedule has run.
WOOD = dict(ood_split="ood", start_iter=40, top_k=30, clusters=6)
OCR = dict(weight=1.0, margin=1.0)
#: W-OoD settings tried against the configured WOOD on seed 0's train images (``--wood-variants``): the
#: reference's adversarial climb of the OoD batch (step 0.07), an all-negative weight of 1 instead of 0.3, every
#: context-only image instead of the hardest half, and climb + weight 1.
WOOD_VARIANTS: dict[str, dict[str, Any]] = {
    "adv": {"adv_step": 0.07}, "w1": {"ood_weight": 1.0}, "all60w1": {"top_k": None, "ood_weight": 1.0},
    "advw1": {"adv_step": 0.07, "ood_weight": 1.0}}
#: Targets of the issue at the default bias.
PRECISION_GAIN, RECALL_LOSS, SEG_GAIN, BIAS0_COST = 0.10, 0.05, 0.05, 0.01


def quality_cfg(work_dir: Path, data_root: Path, seed: int, bias: float, num_ood: int, extra: dict | None = None):
    """The quality benchmark's config for one (data, seed, work_dir), with ``extra`` overrides."""
    opts = {"data.root": str(data_root), "data.generate.bias": bias, "seed": seed, **(extra or {})}
    if num_ood:
        opts["data.generate.num_ood"] = num_ood
    return load_config(str(ROOT / QUALITY), opts, str(work_dir))


def run(cfg: Any, module: str) -> None:
    """One stage in-process (complete stages return at once)."""
    importlib.import_module(f"stages.{module}").run(cfg)


def cam_quality(path: Path) -> dict[str, float] | None:
    """mIoU, mean fg precision / recall over classes and the oracle of a CAM stage's metrics.json."""
    if not path.is_file():
        return None
    from benchmarks.quality_real import cam_precision_recall

    m = json.loads(path.read_text())
    return {**cam_precision_recall(m), "oracle_t": m["oracle"]["threshold"]}


def seg_quality(path: Path) -> dict[str, float] | None:
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {"miou": m.get("miou"), "ms": m.get("miou_final"), "ooc": m.get("ooc_share")}


def mask_quality(path: Path) -> dict[str, float] | None:
    return {"miou": json.loads(path.read_text())["miou"]} if path.is_file() else None


def seeds_part(base: Path, wood_dir: Path, bias: float, seed: int, data: Path, wood_data: Path,
               wood: bool = True) -> None:
    """Baseline classifier + CAMs (reused when present), debias on them, W-OoD classifier + CAMs + debias."""
    from wsss.pipeline import ensure_synthetic

    num_ood = NUM_OOD if data == wood_data else 0  # the baseline's own data has an OoD split only when shared
    cfg = quality_cfg(base, data, seed, bias, num_ood)
    ensure_synthetic(cfg.data)
    for module in ("train_cls", "make_cam"):
        run(cfg, module)
    run(quality_cfg(base, data, seed, bias, num_ood, {"debias": dict(DEBIAS, input="make_cam")}), "debias")
    if not wood:
        return
    wcfg = quality_cfg(wood_dir, wood_data, seed, bias, NUM_OOD, {"train_cls.wood": dict(WOOD)})
    ensure_synthetic(wcfg.data)
    for module in ("train_cls", "make_cam"):
        run(wcfg, module)
    run(quality_cfg(wood_dir, wood_data, seed, bias, NUM_OOD,
                    {"train_cls.wood": dict(WOOD), "debias": dict(DEBIAS, input="make_cam")}), "debias")


#: The walk's decision threshold on debiased seeds, chosen on seed 0's train images (the walked debiased CAMs had
#: their oracle there, 71.8 at 0.4 against 66.3 at the chain's 0.5; the plain chain's oracle is its 0.5).
DEBIAS_WALK_THRESHOLD = 0.4


def long_seg_options(cfg: Any) -> dict[str, Any]:
    """The ``train_seg`` options of the quality chain's own ``train_seg_long`` pipeline entry, less its name, so the
    composition's long network trains on the plain long network's schedule by construction."""
    entry = next(e for e in cfg.pipeline if isinstance(e, dict) and e.get("name") == "train_seg_long")
    return {k: v for k, v in entry["cfg"]["train_seg"].items() if k != "name"}


def walk_debiased_to_seg(cfg: Callable[[dict], Any], long: bool = False) -> None:
    """The composition's steps after debias, in the work dir of ``cfg`` (extra overrides -> config): the walk on
    the ``debias`` CAMs, CRF pseudo masks at DEBIAS_WALK_THRESHOLD, DeepLabV3+ with OCR, its val evaluation;
    with ``long`` also DeepLabV3+ with OCR on the same masks at the schedule of the quality chain's own
    ``train_seg_long`` (:func:`long_seg_options`), which it pairs with."""
    run(cfg({"propagate.name": "propagate_debias", "propagate.input": "debias"}), "propagate")
    run(cfg({"pseudo.name": "make_pseudo_debias_t40", "pseudo.input": "propagate_debias",
             "pseudo.bg_threshold": DEBIAS_WALK_THRESHOLD}), "make_pseudo")
    run(cfg({"train_seg.name": "train_seg_debias_t40_ocr", "train_seg.masks": "make_pseudo_debias_t40",
             "train_seg.ocr": dict(OCR)}), "train_seg")
    run(cfg({"eval_seg.name": "eval_seg_debias_t40_ocr", "eval_seg.input": "train_seg_debias_t40_ocr"}),
        "eval_seg")
    if long:
        run(cfg({"train_seg.name": "train_seg_debias_t40_ocr_long", "train_seg.masks": "make_pseudo_debias_t40",
                 "train_seg.ocr": dict(OCR), **{f"train_seg.{k}": v for k, v in long_seg_options(cfg({})).items()}}),
            "train_seg")
        run(cfg({"eval_seg.name": "eval_seg_debias_t40_ocr_long", "eval_seg.input": "train_seg_debias_t40_ocr_long"}),
            "eval_seg")


def chain_part(base: Path, data: Path, seed: int, ocr_alone: bool = True, long: bool = False) -> None:
    """OCR alone on the chain's pseudo masks; debias -> walk -> CRF pseudo masks at the walk threshold chosen on
    train (DEBIAS_WALK_THRESHOLD) -> DeepLabV3+ with OCR.

    Two placements of debias were measured on seed 0 first (train images): after the walk (on the walked CAMs,
    as MARS cleans final labels) the CRF pseudo masks fell from 74.1 to 52.1, because the feature clusters mix
    objects with their surroundings and, once the walk has made the CAMs tight, those mixed clusters are half
    CAM-free and get removed with the object; before the walk at the chain's threshold 0.5 they fell to 71.4
    (the zeroed context moves the walk's balance towards background: its oracle threshold drops to 0.4)."""
    cfg = lambda extra: quality_cfg(base, data, seed, DEFAULT_BIAS, 0, extra)  # noqa: E731
    if ocr_alone:
        run(cfg({"train_seg.name": "train_seg_ocr", "train_seg.ocr": dict(OCR)}), "train_seg")
        run(cfg({"eval_seg.name": "eval_seg_ocr", "eval_seg.input": "train_seg_ocr"}), "eval_seg")
    walk_debiased_to_seg(cfg, long=long)


def wood_chain_part(wood_dir: Path, wood_data: Path, seed: int) -> None:
    """W-OoD + debias through the chain, in the W-OoD work dir: an affinity net trained on the W-OoD classifier's
    own CAMs (as IRN, which W-OoD builds on, trains it on the CAMs it refines), the walk on the debiased W-OoD
    CAMs, CRF pseudo masks at DEBIAS_WALK_THRESHOLD (not re-chosen), DeepLabV3+ with OCR. The data is the
    quality benchmark's train/val plus the context-only split, so val scores pair with the plain chain's."""
    cfg = lambda extra: quality_cfg(wood_dir, wood_data, seed, DEFAULT_BIAS, NUM_OOD,  # noqa: E731
                                    {"train_cls.wood": dict(WOOD), "debias": dict(DEBIAS, input="make_cam"),
                                     **extra})
    run(cfg({}), "train_aff")
    walk_debiased_to_seg(cfg)


# ----------------------------------------------------------------------------------------------- tables
def _stat(rows: Sequence[dict | None], key: str):
    from wsss.eval.seeds import mean_std

    return mean_std([(r or {}).get(key) for r in rows])


def _gain(a: Sequence[dict | None], b: Sequence[dict | None], key: str):
    from wsss.eval.seeds import paired_gain

    return paired_gain([(r or {}).get(key) for r in a], [(r or {}).get(key) for r in b])


SEED_METHODS = (("baseline (seed CAMs)", "base", "make_cam"), ("debias (MARS-style)", "base", "debias"),
                ("W-OoD", "wood", "make_cam"), ("W-OoD + debias", "wood", "debias"))


def seed_rows(dirs: Sequence[tuple[Path, Path]]) -> dict[str, list[dict | None]]:
    """{method: [cam quality per seed]} for (baseline dir, W-OoD dir) per seed."""
    return {label: [cam_quality((b if which == "base" else w) / stage / "metrics.json") for b, w in dirs]
            for label, which, stage in SEED_METHODS}


#: False positives within this distance of the class's own object count as "near" (two cells of the stride-8 CAM).
NEAR_PX = 16.0


def false_positive_split(cam_dir: Path, data_root: Path, threshold: float = 0.5,
                         near_px: Sequence[float] = (NEAR_PX,)) -> dict[float, dict[str, float]] | None:
    """Precision of a CAM stage's train images at ``threshold``, split by where the false positives fall
    (wsss.eval.false_positives): near the class's object, on its context (the image's background kind is the
    class's own, from the generator's synthetic.json), elsewhere; with the precision ceiling of context removal.
    One result per distance of ``near_px`` (a pixel is near within it), from one pass over the CAM files."""
    from wsss.cam.io import load_cam
    from wsss.data.build import build_dataset
    from wsss.eval.cam_eval import cam_to_labels
    from wsss.eval.false_positives import false_positive_counts, precision_ceiling

    if not (cam_dir / "metrics.json").is_file():
        return None
    meta = json.loads((data_root / "synthetic.json").read_text())
    own = [c["background"] for c in meta["classes"]]
    ds = build_dataset(load_config(str(ROOT / QUALITY), {"data.root": str(data_root)}, str(cam_dir)).data, "train")
    counts = {near: np.zeros((ds.num_classes, 4), np.int64) for near in near_px}
    for i in ds.ids:
        keys, cams = load_cam(cam_dir / "cams" / f"{i}.npz")
        pred, gt = cam_to_labels(keys, cams, threshold), ds.mask(i)
        context = [k + 1 for k, kind in enumerate(own) if kind == meta["backgrounds"][i]]
        for near in near_px:
            counts[near] += false_positive_counts(pred, gt, ds.num_classes, near, context)
    present = [c for c in range(1, ds.num_classes) if any(c in ds.labels[i] for i in ds.ids)]
    return {near: precision_ceiling(c, present) for near, c in counts.items()}


def false_positive_table(dirs: Sequence[tuple[Path, Path]], data_roots: tuple[Path, Path]) -> str:
    """Per method (mean ± std over seeds): precision; the share of the baseline's context / near false-positive
    pixels it removed (paired by seed); the share of its own false positives that are near the object; and the
    precision if every context false positive were removed, with "near" at one and at two CAM cells (8 / 16 px),
    since how far a context-driven spill reaches is not known."""
    lines = ["| method | fg precision | baseline's context FPs removed (16 px) | baseline's near FPs removed (16 px) | "
             "own FPs near the object (<= 16 px) | precision without context FPs: near <= 8 px | near <= 16 px |",
             "|---|---|---|---|---|---|---|"]
    base: dict[float, list] = {}
    for label, which, stage in SEED_METHODS:
        splits = [false_positive_split((b if which == "base" else w) / stage,
                                       data_roots[0] if which == "base" else data_roots[1], near_px=(8.0, NEAR_PX))
                  for b, w in dirs]
        rows = {near: [sp[near] if sp else None for sp in splits] for near in (8.0, NEAR_PX)}
        base = base or rows
        removed = [{k: (1 - r[f"fp_{k}"] / b0[f"fp_{k}"]) if b0[f"fp_{k}"] > 0 else None  # none to remove
                    for k in ("context", "near")} if r and b0 else None
                   for r, b0 in zip(rows[NEAR_PX], base[NEAR_PX])]
        cells = [_stat(rows[NEAR_PX], "precision").format(),
                 "-" if rows is base else _stat(removed, "context").format(),
                 "-" if rows is base else _stat(removed, "near").format(),
                 _stat(rows[NEAR_PX], "share_near").format(),
                 _stat(rows[8.0], "precision_without_context").format(),
                 _stat(rows[NEAR_PX], "precision_without_context").format()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(res: dict[str, list[dict | None]], targets: bool) -> str:
    base = res[SEED_METHODS[0][0]]
    head = "| method | seed mIoU | fg precision | fg recall | ORACLE mIoU | precision gain | recall change |"
    if targets:
        head += " target (+10 precision, <= 5 recall lost) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, rows in res.items():
        if not any(rows):
            lines.append(f"| {label} | not run |" + " - |" * (head.count("|") - 3))
            continue
        pg, rc = _gain(rows, base, "precision"), _gain(rows, base, "recall")
        cells = [label, _stat(rows, "miou").format(), _stat(rows, "precision").format(),
                 _stat(rows, "recall").format(), _stat(rows, "oracle").format(),
                 "-" if rows is base else pg.format(), "-" if rows is base else rc.format()]
        if targets:
            if rows is base:
                cells.append("-")
            else:
                met = pg.stats.mean >= PRECISION_GAIN and rc.stats.mean >= -RECALL_LOSS and pg.shown is not False
                cells.append("met" if met else "MISSED")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chain_table(bases: Sequence[Path], wood_bases: Sequence[Path] = ()) -> tuple[str, dict[str, Any]]:
    """Chain rows at the default bias: baseline chain, OCR alone, debias -> walk -> OCR and, where its files
    exist, W-OoD + debias -> walk -> OCR (mean ± std, paired gains over the plain chain's segmentation); the
    first variant (debias before the walk at 0.5, run on seed 0 only) where its files exist. Returns the table
    and the seg gain of each composition by label."""
    walk = [cam_quality(b / "propagate" / "metrics.json") for b in bases]
    pseudo = [mask_quality(b / "make_pseudo" / "metrics.json") for b in bases]
    seg = [seg_quality(b / "eval_seg" / "metrics.json") for b in bases]
    seg_o = [seg_quality(b / "eval_seg_ocr" / "metrics.json") for b in bases]
    lines = ["| chain (bias 0.8) | walk CAMs mIoU (train) | pseudo masks (train) | seg val mIoU ss | "
             "seg val ms + flip | out-of-candidate pixels (val, ss) | seg gain over the chain without it |",
             "|---|---|---|---|---|---|---|"]

    def row(label, w, p, s, gain):
        lines.append(f"| {label} | {_stat(w, 'miou').format() if w else '-'} | "
                     f"{_stat(p, 'miou').format() if p else '-'} | {_stat(s, 'miou').format()} | "
                     f"{_stat(s, 'ms').format()} | {_stat(s, 'ooc').format(100, 2)} % | {gain} |")

    def composition(dirs: Sequence[Path], pseudo_stage: str, seg_stage: str):
        """(walked debiased CAMs, pseudo masks, segmentation) of a composition's stages, one per dir."""
        return ([cam_quality(d / "propagate_debias" / "metrics.json") for d in dirs],
                [mask_quality(d / pseudo_stage / "metrics.json") for d in dirs],
                [seg_quality(d / seg_stage / "metrics.json") for d in dirs])

    row("baseline: seeds -> walk -> CRF -> DeepLabV3+", walk, pseudo, seg, "-")
    row("+ OCR in train_seg (same pseudo masks)", None, None, seg_o, _gain(seg_o, seg, "miou").format())
    gains = {}
    label_a = f"debias -> walk -> CRF at {DEBIAS_WALK_THRESHOLD} -> DeepLabV3+ with OCR"
    walk_a, pseudo_a, seg_a = composition(bases, "make_pseudo_debias_t40", "eval_seg_debias_t40_ocr")
    gains[label_a] = _gain(seg_a, seg, "miou")
    row(label_a, walk_a, pseudo_a, seg_a, gains[label_a].format())
    label_b = f"W-OoD + debias -> walk (own affinity net) -> CRF at {DEBIAS_WALK_THRESHOLD} -> DeepLabV3+ with OCR"
    walk_b, pseudo_b, seg_b = composition(wood_bases, "make_pseudo_debias_t40", "eval_seg_debias_t40_ocr")
    if any(seg_b):
        gains[label_b] = _gain(seg_b, seg, "miou")
        row(label_b, walk_b, pseudo_b, seg_b, gains[label_b].format())
    seg_long_a = [seg_quality(b / "eval_seg_debias_t40_ocr_long" / "metrics.json") for b in bases]
    if any(seg_long_a):  # (a)'s own masks, its network at the long schedule, against the plain long network
        seg_long = [seg_quality(b / "eval_seg_long" / "metrics.json") for b in bases]
        row("baseline at the bound's 1440 iterations (the quality chain's train_seg_long)", None, None, seg_long, "-")
        label = f"{label_a}, 1440 iterations"
        gains[label] = _gain(seg_long_a, seg_long, "miou")
        row(label, walk_a, pseudo_a, seg_long_a, gains[label].format())
    pre = list(zip(*composition(bases, "make_pseudo_debias", "eval_seg_debias_ocr")))
    done = [k for k, p in enumerate(pre) if all(p)]
    if done:
        pick = lambda j: [pre[k][j] for k in done]  # noqa: E731
        row(f"(variant, seeds {done}) debias -> walk -> CRF at 0.5 -> DeepLabV3+ with OCR", pick(0), pick(1), pick(2),
            _gain(pick(2), [seg[k] for k in done], "miou").format())
    return "\n".join(lines), gains


def seg_target_verdict(gain: Any) -> str:
    """'met' when the paired seg gain is >= SEG_GAIN on average and beyond twice its spread, else 'MISSED'."""
    return "met" if gain.stats.n and gain.stats.mean >= SEG_GAIN and gain.shown else "MISSED"


def sweep_table(work_root: Path, quality_root: Path, biases: Sequence[float], seeds: Sequence[int]) -> str:
    lines = ["| bias | method | seeds | seed mIoU | fg precision | fg recall | ORACLE mIoU | mIoU change |",
             "|---|---|---|---|---|---|---|---|"]
    for b in biases:
        res = seed_rows([bias_dirs(work_root, quality_root, b, s) for s in seeds])
        base = res[SEED_METHODS[0][0]]
        for label, rows in res.items():
            n = sum(r is not None for r in rows)
            lines.append(f"| {b:.2f} | {label} | {n} | {_stat(rows, 'miou').format()} | "
                         f"{_stat(rows, 'precision').format()} | {_stat(rows, 'recall').format()} | "
                         f"{_stat(rows, 'oracle').format()} | "
                         f"{'-' if rows is base else _gain(rows, base, 'miou').format()} |")
    return "\n".join(lines)


def wood_variant_dir(work_root: Path, seed: int, name: str) -> Path:
    return work_root / f"bias_{DEFAULT_BIAS:.2f}" / f"seed{seed}_wood_{name}"


def wood_variant_part(work_root: Path, wood_data: Path, seed: int, name: str) -> None:
    """The W-OoD classifier with WOOD_VARIANTS[name] over WOOD, and its CAMs, at the default bias."""
    cfg = quality_cfg(wood_variant_dir(work_root, seed, name), wood_data, seed, DEFAULT_BIAS, NUM_OOD,
                      {"train_cls.wood": {**WOOD, **WOOD_VARIANTS[name]}})
    for module in ("train_cls", "make_cam"):
        run(cfg, module)


def wood_variant_table(work_root: Path, quality_root: Path, seeds: Sequence[int], names: Sequence[str]) -> str:
    """Seed quality of each W-OoD variant beside the baseline and the configured W-OoD (same seeds)."""
    dirs = [bias_dirs(work_root, quality_root, DEFAULT_BIAS, s) for s in seeds]
    seeds_of = lambda ds: [cam_quality(d / "make_cam" / "metrics.json") for d in ds]  # noqa: E731
    base = seeds_of([b for b, _ in dirs])
    rows = [("baseline (seed CAMs)", base), (f"W-OoD as configured {WOOD}", seeds_of([w for _, w in dirs]))]
    rows += [(f"W-OoD + {WOOD_VARIANTS[n]}", seeds_of([wood_variant_dir(work_root, s, n) for s in seeds]))
             for n in names]
    lines = ["| W-OoD setting | seeds | seed mIoU | fg precision | fg recall | ORACLE mIoU | "
             "precision gain over the baseline |",
             "|---|---|---|---|---|---|---|"]
    for label, q in rows:
        cells = [str(sum(r is not None for r in q))] + [_stat(q, k).format() for k in ("miou", "precision", "recall",
                                                                                         "oracle")]
        cells.append("-" if q is base else _gain(q, base, "precision").format())
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_dirs(work_root: Path, quality_root: Path, bias: float, seed: int) -> tuple[Path, Path]:
    """(baseline work_dir, W-OoD work_dir) of one bias and seed: the quality benchmark's at the default bias."""
    if abs(bias - DEFAULT_BIAS) < 1e-9:
        return quality_root / f"seed{seed}", work_root / f"bias_{bias:.2f}" / f"seed{seed}_wood"
    return work_root / f"bias_{bias:.2f}" / f"seed{seed}", work_root / f"bias_{bias:.2f}" / f"seed{seed}_wood"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality-root", type=Path, default=ROOT / "work_dirs" / "quality_synthetic")
    ap.add_argument("--work-root", type=Path, default=ROOT / "work_dirs" / "context_bias")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds at the default bias")
    ap.add_argument("--sweep", default="0.0,0.5,0.95", help="other biases (seeds part only); '' for none")
    ap.add_argument("--sweep-seeds", default="0")
    ap.add_argument("--wood-variants", default="", help=f"comma-separated W-OoD settings to try at the default "
                    f"bias on --variant-seeds (train_cls + make_cam): {', '.join(WOOD_VARIANTS)}; the table reads "
                    f"every seed of --seeds that has them")
    ap.add_argument("--variant-seeds", default="0")
    ap.add_argument("--no-chain", action="store_true", help="skip OCR and the composition through segmentation")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: 'wood' (the W-OoD "
                    "classifier), 'ocr' (OCR alone through segmentation, default bias only)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--long", action="store_true", help="also train the composition's network for the bound's "
                    "1440 iterations (about 17 one-core minutes a seed), paired with the chain's train_seg_long")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks.quality_real import device_line, start_run

    start_run(args.threads)
    os.chdir(ROOT)
    qroot, wroot = args.quality_root.absolute(), args.work_root.absolute()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sweep = [float(b) for b in args.sweep.split(",") if b.strip()]
    sweep_seeds = [int(s) for s in args.sweep_seeds.split(",") if s.strip()]
    skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    variants = [v.strip() for v in args.wood_variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(WOOD_VARIANTS))
    if unknown:
        ap.error(f"unknown --wood-variants {unknown}; choose from {sorted(WOOD_VARIANTS)}")
    qdata, wdata = qroot / "data", wroot / f"bias_{DEFAULT_BIAS:.2f}" / "data"
    t0 = time.time()
    if not args.report_only:
        for s in seeds:
            base, wood = bias_dirs(wroot, qroot, DEFAULT_BIAS, s)
            seeds_part(base, wood, DEFAULT_BIAS, s, qdata, wdata, wood="wood" not in skip)
        if not args.no_chain:
            from benchmarks.quality_synthetic import main as quality_main

            for s in seeds:  # the chain the composition is compared with: the quality benchmark's own
                if not (qroot / f"seed{s}" / "eval_seg" / "metrics.json").is_file():
                    quality_main(["--work-root", str(qroot), "--seeds", str(s), "--no-toco"]
                                 + (["--threads", str(args.threads)] if args.threads else []))
                chain_part(qroot / f"seed{s}", qdata, s, ocr_alone="ocr" not in skip, long=args.long)
                if "wood" not in skip:
                    wood_chain_part(bias_dirs(wroot, qroot, DEFAULT_BIAS, s)[1], wdata, s)
        for name in variants:
            for s in [int(v) for v in args.variant_seeds.split(",") if v.strip()]:
                wood_variant_part(wroot, wdata, s, name)
        for b in sweep:
            for s in sweep_seeds:
                base, wood = bias_dirs(wroot, qroot, b, s)
                data = wroot / f"bias_{b:.2f}" / "data"
                seeds_part(base, wood, b, s, data, data, wood="wood" not in skip)
    minutes = (time.time() - t0) / 60
    res = seed_rows([bias_dirs(wroot, qroot, DEFAULT_BIAS, s) for s in seeds])
    out = [f"`python benchmarks/context_bias.py` ({device_line(args.threads)}; {datetime.date.today()}"
           + ("" if args.report_only else f"; {minutes:.0f} min") + ")", "",
           f"Seeds at the default bias {DEFAULT_BIAS} (configs/synthetic/quality.py, train images, background "
           f"threshold 0.5, training seeds {', '.join(map(str, seeds))}):", "", seeds_table(res, True), "",
           f"Where the seeds' false positives fall (train images, threshold 0.5; 'context' = far from the class's "
           f"object in an image whose background is the class's own kind):", "",
           false_positive_table([bias_dirs(wroot, qroot, DEFAULT_BIAS, s) for s in seeds], (qdata, wdata)), ""]
    if not args.no_chain:
        table, gains = chain_table([qroot / f"seed{s}" for s in seeds],
                                   [bias_dirs(wroot, qroot, DEFAULT_BIAS, s)[1] for s in seeds])
        out += ["Through the chain (segmentation on the held-out val split):", "", table, "",
                "Target (a composition raises seg val mIoU by >= 5 beyond twice the spread):", ""]
        out += [f"- {label}: {seg_target_verdict(g)} ({g.format()})" for label, g in gains.items()] + [""]
    if variants:
        out += [f"W-OoD settings at bias {DEFAULT_BIAS} (train images; each row over the seeds of "
                f"{', '.join(map(str, seeds))} where it ran, gains paired with the baseline of the same seeds):", "",
                wood_variant_table(wroot, qroot, seeds, variants), ""]
    if sweep:
        out += [f"Bias sweep (seeds part; training seeds {', '.join(map(str, sweep_seeds))} at the swept biases, "
                f"{', '.join(map(str, seeds))} at {DEFAULT_BIAS}):", "",
                sweep_table(wroot, qroot, sorted(set(sweep) | {DEFAULT_BIAS}), sweep_seeds), ""]
        for b in sorted(sweep):
            data = wroot / f"bias_{b:.2f}" / "data"
            note = "; at bias 0 no object lies on its own background: no context false positive" if b == 0 else ""
            out += [f"Where the seeds' false positives fall at bias {b:.2f} (training seeds "
                    f"{', '.join(map(str, sweep_seeds))}{note}):", "",
                    false_positive_table([bias_dirs(wroot, qroot, b, s) for s in sweep_seeds], (data, data)), ""]
    text = "\n".join(out)
    wroot.mkdir(parents=True, exist_ok=True)
    (wroot / "report.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
