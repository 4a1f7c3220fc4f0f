"""Stage eval_seg: the segmentation network's mIoU on the validation split, single-scale and multi-scale + flip.

Reads ``<work_dir>/<eval_seg.input>/final.pth`` (written by train_seg, with the ``seg_model`` config it was
trained with). Writes ``<work_dir>/<name>/``:

* ``preds/<id>.png``: palette PNGs of the final prediction (the last of single-scale -> multi-scale/flip ->
  CRF that the config asks for); the earlier variants go to ``preds_ss/`` and ``preds_ms/``. A prediction file
  exists only when complete, so a killed evaluation resumes per image; metrics are always recomputed from the
  saved files, so a resumed run reports exactly what an unbroken one would.
* ``metrics.json``: ``miou`` / ``per_class`` / ``pixel_accuracy`` of the single-scale prediction, ``ms`` and
  ``crf`` summaries with ``miou_ms`` / ``miou_crf`` when configured, and ``ratio_to_full`` (our final mIoU over
  the fully supervised model's, read from ``<work_dir>/<eval_seg.upper_bound>/metrics.json`` when it exists; the
  text "bound not converged" with ``bound_reason`` instead when that bound fails :mod:`wsss.eval.bound`),
  ``ooc_share`` / ``ooc_share_<variant>``: the share of pixels predicted as a class absent from the image's
  labels (out-of-candidate; compare runs with and without ``train_seg.ocr``).
* ``confusion.png`` (row-normalised confusion matrix of the final prediction), ``per_class_iou.png``.

``eval_seg.name`` renames the folder (``eval_seg_gt`` evaluates the upper bound, ``input='train_seg_gt'``).
Under torchrun the images are sharded by rank.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from wsss import dist
from wsss.artifacts import MANIFEST, read_manifest, write_json_atomic
from wsss.config import Config, to_plain
from wsss.data.base import SegDataset
from wsss.data.build import build_dataset
from wsss.data.palette import load_mask, save_mask
from wsss.engine.stage import close_stage, open_stage, pending, stage_run
from wsss.errors import InputError, StageSkipped, WSSSError
from wsss.eval.bound import NOT_CONVERGED, bound_ratio, bound_verdict, curve_converged, format_ratio
from wsss.eval.confusion import ConfusionMatrix, format_table
from wsss.eval.confusion_plot import confusion_figure, iou_bar_figure, save_figure
from wsss.eval.seg_infer import image_to_tensor, predict_probs
from wsss.models.seg import build_segmentor
from wsss.schema import Rule, Schema

#: The bound's val curve that train_seg writes with ``train_seg.eval_points`` (see stages/train_seg.py).
CURVE_FILE = "curve.json"

log = logging.getLogger(__name__)

STAGE = "eval_seg"
CONFIG_KEYS = ("data", "eval_seg")

DEFAULTS: dict[str, Any] = dict(
    name=None, input="train_seg", split=None, scales=[1.0], flip=False, mode="whole", crop_size=512, stride=341,
    crf=False, crf_params={}, save_predictions=True, upper_bound="eval_seg_gt", amp=True, checkpoint="final.pth",
)

#: Human names of the prediction variants, for logs and plots.
VARIANT_TITLES = {"ss": "single-scale", "ms": "multi-scale", "crf": "+ CRF"}


#: What the ``eval_seg`` section accepts (wsss/schema.py); the folder name and the upper-bound stage (only the
#: ratio in the report) are not part of the stage's identity.
SCHEMA = Schema("eval_seg", DEFAULTS, rules=dict(
    name=Rule(kind="str"), input=Rule(kind="str"), split=Rule(kind="str"), scales=Rule(gt=0, nonempty=True),
    mode=Rule(choices=("whole", "slide")), crop_size=Rule(min=8), stride=Rule(min=1),
    upper_bound=Rule(kind="str", nullable=True), checkpoint=Rule(kind="str")),
    runtime=("name",), evaluation=("upper_bound",))
SCHEMAS = (SCHEMA,)


def section(cfg: Config) -> dict[str, Any]:
    """The ``eval_seg`` section with defaults filled in (unknown keys and wrong values are an error)."""
    sec = SCHEMA.resolve(to_plain(cfg.get("eval_seg") or {}))
    sec["scales"] = [float(s) for s in (sec["scales"] or [1.0])]
    return sec


def stage_name(cfg: Config) -> str:
    return section(cfg)["name"] or STAGE


def inputs(cfg: Config) -> list[str]:
    return [str(section(cfg)["input"])]


def is_multi(sec: Mapping[str, Any]) -> bool:
    """True when the configured inference has more than the one scale-1.0 view."""
    return bool(sec["flip"]) or list(sec["scales"]) != [1.0]


def variants(sec: Mapping[str, Any]) -> list[str]:
    """Prediction variants in order of computation; the last one is the stage's final prediction."""
    out = ["ss"]
    if is_multi(sec):
        out.append("ms")
    if sec["crf"]:
        out.append("crf")
    return out


def variant_title(variant: str, sec: Mapping[str, Any]) -> str:
    if variant == "ms":
        return "multi-scale + flip" if sec["flip"] and list(sec["scales"]) != [1.0] else (
            "flip" if sec["flip"] else "multi-scale")
    if variant == "crf":
        return f"{variant_title('ms', sec) if is_multi(sec) else 'single-scale'} + CRF"
    return VARIANT_TITLES[variant]


def pred_dirs(stage_dir: Path, names: Sequence[str]) -> dict[str, Path]:
    """Where each variant's PNGs go: the final one in ``preds/``, the others in ``preds_<variant>/``."""
    return {v: stage_dir / ("preds" if v == names[-1] else f"preds_{v}") for v in names}


def load_segmentor(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network of a ``final.pth`` (weights + ``seg_model`` config), in eval mode on ``device``."""
    if not path.is_file():
        raise InputError(path, "segmentation checkpoint not found; run train_seg first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(path, f"unreadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "seg_model" not in ckpt or "model" not in ckpt:
        raise InputError(path, "not a train_seg final.pth (no 'seg_model' config in it)")
    model_cfg = {**ckpt["seg_model"], "pretrained": False, "weights": None}  # the checkpoint has every weight
    model = build_segmentor(model_cfg, int(ckpt["num_classes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def _crf_fn(sec: Mapping[str, Any]) -> Any:
    """``probs [C, H, W], image -> refined probs`` using wsss.refine.crf, checked before any image is done."""
    try:
        from wsss.refine.crf import CRFParams, dense_crf, require_pydensecrf
    except ImportError as e:
        raise WSSSError(f"eval_seg.crf=True but the CRF helper is not available yet ({e})") from e
    require_pydensecrf()
    params = CRFParams.from_config(sec.get("crf_params") or {})
    return lambda image, probs: dense_crf(image, probs, params)


@torch.no_grad()
def predict_image(model: torch.nn.Module, image: np.ndarray, sec: Mapping[str, Any], device: torch.device,
                  crf: Any = None) -> dict[str, np.ndarray]:
    """Predictions of one image, {variant: [H, W] uint8 labels}, for the variants of ``sec`` (see
    :func:`variants`). image: [H, W, 3] uint8 RGB. ``crf`` is the function from :func:`_crf_fn` (crf=True)."""
    x = image_to_tensor(image).to(device)
    kw = dict(mode=sec["mode"], crop_size=int(sec["crop_size"]), stride=int(sec["stride"]),
              autocast=bool(sec["amp"]))
    pred = predict_probs(model, x, sec["scales"], bool(sec["flip"]), **kw)
    single = pred.single if pred.single is not None else predict_probs(model, x, (1.0,), False, **kw).probs
    out = {"ss": single[0].argmax(0).to(torch.uint8).cpu().numpy()}
    if is_multi(sec):
        out["ms"] = pred.probs[0].argmax(0).to(torch.uint8).cpu().numpy()
    if sec["crf"]:
        if crf is None:
            raise ValueError("crf=True needs the crf function")
        probs = (pred.probs if is_multi(sec) else single)[0].cpu().numpy()
        out["crf"] = crf(image, probs).argmax(0).astype(np.uint8)
    return out


def ooc_pixels(pred: np.ndarray, label_vector: np.ndarray) -> tuple[int, int]:
    """(pixels predicted as a class absent from the image's labels, all pixels) of one prediction.

    pred: [H, W] uint8 classes; label_vector: [C-1] multi-hot foreground labels (background is always a
    candidate). The ratio over a split is the out-of-candidate share that OCR (train_seg.ocr) lowers."""
    allowed = np.concatenate([[True], label_vector > 0])
    return int((~allowed[pred.astype(np.int64)]).sum()), int(pred.size)


def predict_split(model: torch.nn.Module, ds: SegDataset, ids: Sequence[str], sec: Mapping[str, Any],
                  device: torch.device, dirs: Mapping[str, Path] | None = None,
                  matrices: Mapping[str, ConfusionMatrix] | None = None, crf: Any = None,
                  ooc: Mapping[str, torch.Tensor] | None = None) -> None:
    """Predict ``ids``: write each variant's palette PNG to ``dirs[variant]/<id>.png`` (the final variant last,
    so its existence marks the image done) and/or add them to ``matrices[variant]`` against ground truth and
    their out-of-candidate counts to ``ooc[variant]`` (int64 [2]: OC pixels, pixels)."""
    names = variants(sec)
    for image_id in tqdm(ids, desc="eval_seg", disable=not dist.is_main() or not ids, leave=False):
        preds = predict_image(model, ds.image(image_id), sec, device, crf)
        if matrices is not None:
            gt = ds.mask(image_id)
            for v in names:
                matrices[v].update(preds[v], gt)
        if ooc is not None:
            for v in names:
                ooc[v] += torch.tensor(ooc_pixels(preds[v], ds.label_vector(image_id)))
        if dirs is not None:
            for v in names:
                save_mask(dirs[v] / f"{image_id}.png", preds[v])


def score_predictions(ds: SegDataset, ids: Sequence[str], dirs: Mapping[str, Path],
                      distributed: bool = False,
                      ooc: Mapping[str, torch.Tensor] | None = None) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of saved predictions against the ground truth of ``ids``, one per variant; with
    ``ooc`` also each variant's out-of-candidate counts added to ``ooc[variant]`` (int64 [2], summed over ranks).

    ``distributed``: call on every rank; each scores its shard and the matrices are summed (exact integers)."""
    mats = {v: ConfusionMatrix(ds.num_classes) for v in dirs}
    error = None
    try:
        for image_id in tqdm(dist.shard(ids) if distributed else ids, desc="scoring", leave=False,
                             disable=not dist.is_main()):
            gt = ds.mask(image_id)
            for v, d in dirs.items():
                pred = load_mask(d / f"{image_id}.png", ds.num_classes)
                if pred.shape != gt.shape:
                    raise InputError(d / f"{image_id}.png", f"prediction {pred.shape} does not match ground "
                                                            f"truth {gt.shape}; delete it and re-run")
                mats[v].update(pred, gt)
                if ooc is not None:
                    ooc[v] += torch.tensor(ooc_pixels(pred, ds.label_vector(image_id)))
    except Exception as e:  # noqa: BLE001 - every rank must hear of it before the reduction
        error = e
    dist.raise_first_error(error, collective=distributed)
    if distributed:
        for m in mats.values():
            m.reduce()
        for v in ooc or {}:
            ooc[v].copy_(dist.all_reduce_sum(ooc[v]))
    return mats


def ooc_summary(ooc: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """{``ooc_share_<variant>``: OC pixels / pixels} and ``ooc_share`` of the single-scale prediction."""
    out = {f"ooc_share_{v}": round(float(t[0]) / max(1, int(t[1])), 6) for v, t in ooc.items()}
    out["ooc_share"] = out["ooc_share_ss"]
    return out


def summarize(mats: Mapping[str, ConfusionMatrix], class_names: Sequence[str], sec: Mapping[str, Any]) -> dict:
    """metrics.json content: the single-scale summary at top level, the other variants under their names,
    ``miou_<variant>`` shortcuts, and which variant is final."""
    names = list(mats)
    out = dict(mats["ss"].summary(class_names))
    for v in names[1:]:
        out[v] = mats[v].summary(class_names)
        out[f"miou_{v}"] = out[v]["miou"]
    out["final"] = names[-1]
    out["miou_final"] = out["miou"] if names[-1] == "ss" else out[names[-1]]["miou"]
    out["variants"] = {v: variant_title(v, sec) for v in names}
    return out


def report_line(metrics: Mapping[str, Any], split: str) -> str:
    """'val mIoU 61.2 (ss) / 63.0 (ms+flip)', plus the CRF and fully supervised ratio when present."""
    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    line = f"{split} mIoU {pct(metrics.get('miou'))} (ss)"
    if "miou_ms" in metrics:
        short = metrics["variants"]["ms"].replace("multi-scale", "ms").replace(" + ", "+")
        line += f" / {pct(metrics['miou_ms'])} ({short})"
    if "miou_crf" in metrics:
        line += f" / {pct(metrics['miou_crf'])} (+crf)"
    if metrics.get("ratio_to_full") is not None:
        line += f"; {format_ratio(metrics['ratio_to_full'])}"
        if metrics.get("bound_reason"):
            line += f" ({metrics['bound_reason']})"
    return line


def bound_curve_converged(work_dir: Path, train_stage: str | None) -> bool | None:
    """The convergence verdict of the bound's val curve (``<work_dir>/<train_stage>/curve.json``, written by
    train_seg with ``eval_points``), None when it has no curve."""
    if not train_stage:
        return None
    path = Path(work_dir) / str(train_stage) / CURVE_FILE
    if not path.is_file():
        return None
    curve = json.loads(path.read_text())
    return curve_converged([p.get("miou") for p in curve.get("points", [])])


def attach_ratio(metrics: dict, work_dir: Path, own: str, upper_bound: str | None) -> bool:
    """Add WSSS / fully supervised mIoU ratios from ``<work_dir>/<upper_bound>/metrics.json`` when that
    evaluation exists (and is not this stage). Returns True when ``metrics`` changed.

    A ratio is recorded only to a converged bound (:func:`wsss.eval.bound.bound_ratio`: no class of the bound
    at IoU 0, not beaten by this network, its val curve flat at the end when it has one); otherwise the ratio
    keys hold the text "bound not converged" and ``bound_reason`` says why."""
    if not upper_bound or upper_bound == own:
        return False
    path = Path(work_dir) / upper_bound / "metrics.json"
    m = read_manifest(Path(work_dir) / upper_bound)
    if not path.is_file() or not m or m.get("status") != "complete":
        return False
    ub = json.loads(path.read_text())
    final = ub.get("final", "ss")
    final_summary = ub if final == "ss" else (ub.get(final) or {})
    converged = bound_curve_converged(work_dir, ub.get("input"))
    new = {"stage": upper_bound, "miou": ub.get("miou"), "miou_final": ub.get("miou_final", ub.get("miou")),
           "curve_converged": converged}
    ratios: dict[str, Any] = {}
    reason = ""
    for key, ours, theirs, per_class in (
            ("ratio_to_full", metrics.get("miou_final"), new["miou_final"], final_summary.get("per_class")),
            ("ratio_to_full_ss", metrics.get("miou"), new["miou"], ub.get("per_class"))):
        ious = {c: row.get("iou") for c, row in (per_class or {}).items()}
        r = bound_ratio(ours, theirs, ious, converged)
        ratios[key] = round(r, 6) if isinstance(r, float) else r
        if r == NOT_CONVERGED and not reason:
            reason = bound_verdict(ours, theirs, ious, converged).reason
    ratios["bound_reason"] = reason or None
    if metrics.get("upper_bound") == new and all(metrics.get(k) == v for k, v in ratios.items()):
        return False
    metrics["upper_bound"] = new
    metrics.update(ratios)
    return True


def _refresh_ratio(sd: Any, work_dir: Path, name: str, upper_bound: str | None) -> None:
    """A complete evaluation re-run after the upper bound appeared: record the ratio (nothing else changes)."""
    path = sd.path / "metrics.json"
    if not dist.is_main() or not path.is_file():
        return
    metrics = json.loads(path.read_text())
    if attach_ratio(metrics, work_dir, name, upper_bound):
        write_json_atomic(path, metrics)
        manifest = dict(sd.manifest)
        manifest.setdefault("metrics", {})["ratio_to_full"] = metrics["ratio_to_full"]
        manifest["metrics"]["bound_reason"] = metrics.get("bound_reason")
        write_json_atomic(sd.path / MANIFEST, manifest)
        sd.manifest = manifest
        log.info("%s: %s", name, report_line(metrics, metrics.get("split", "val")))


@stage_run
def run(cfg: Config, resume: bool = False, force: bool = False) -> dict:
    """Evaluate (or resume evaluating) the trained network; returns the stage manifest."""
    sec = section(cfg)
    name = stage_name(cfg)
    work_dir = Path(cfg.work_dir)
    split = str(sec["split"] or (cfg.get("data") or {}).get("val_split", "val"))
    ds = build_dataset(cfg.data, split)
    if not ds.has_masks and not sec["save_predictions"]:
        raise StageSkipped(f"{name}: skipped, split '{split}' of {ds.name} has no ground-truth masks to evaluate "
                           f"against (set eval_seg.save_predictions=True to get the predictions)")
    crf = _crf_fn(sec) if sec["crf"] else None
    sd, done = open_stage(cfg, name, CONFIG_KEYS, inputs(cfg), force=force, datasets=[ds], with_masks=True,
                          schemas=SCHEMAS)
    if done:
        _refresh_ratio(sd, work_dir, name, sec["upper_bound"])
        return sd.manifest

    device = dist.resolve_device(cfg.get("device", "auto"))
    model, ckpt = load_segmentor(work_dir / str(sec["input"]) / str(sec["checkpoint"]), device)
    if int(ckpt["num_classes"]) != ds.num_classes:
        raise WSSSError(f"{sec['input']}/{sec['checkpoint']} predicts {ckpt['num_classes']} classes, "
                        f"split '{split}' has {ds.num_classes}")
    names = variants(sec)
    if sec["save_predictions"]:
        dirs = pred_dirs(sd.path, names)
        todo = pending(ds.ids, lambda i: dirs[names[-1]] / f"{i}.png")
        log.info("%s: %d of %d images to predict on this rank (%s)", name, len(todo), len(ds),
                 ", ".join(variant_title(v, sec) for v in names))
        predict_split(model, ds, todo, sec, device, dirs=dirs, crf=crf)
        dist.barrier()
        if not ds.has_masks:
            log.warning("%s: split '%s' of %s has no ground-truth masks: %d predictions written to %s, no mIoU",
                        name, split, ds.name, len(ds), dirs[names[-1]])
            return close_stage(sd, items=len(ds), metrics={}, ground_truth=False)
        ooc = {v: torch.zeros(2, dtype=torch.int64) for v in names}
        mats = score_predictions(ds, ds.ids, dirs, distributed=True, ooc=ooc)
    else:
        mats = {v: ConfusionMatrix(ds.num_classes) for v in names}
        ooc = {v: torch.zeros(2, dtype=torch.int64) for v in names}
        predict_split(model, ds, dist.shard(ds.ids), sec, device, matrices=mats, crf=crf, ooc=ooc)
        for m in mats.values():
            m.reduce()
        for v in names:
            ooc[v].copy_(dist.all_reduce_sum(ooc[v]))

    manifest_metrics: dict[str, Any] = {}
    if dist.is_main():
        assert mats is not None
        metrics = summarize(mats, ds.class_names, sec)
        metrics.update(split=split, images=len(ds), input=str(sec["input"]), **ooc_summary(ooc))
        attach_ratio(metrics, work_dir, name, sec["upper_bound"])
        for v in names:
            title = f"{name} {split}: {variant_title(v, sec)}"
            log.info("\n%s", format_table(mats[v].summary(ds.class_names), title))
        final = names[-1]
        save_figure(confusion_figure(mats[final].mat.numpy(), ds.class_names,
                                     f"{name} {split} ({variant_title(final, sec)}), "
                                     f"mIoU {100 * (metrics['miou_final'] or 0):.1f}"), sd.path / "confusion.png")
        save_figure(iou_bar_figure({variant_title(v, sec): mats[v].iou().tolist() for v in names}, ds.class_names,
                                   f"{name}: per-class IoU on {split}"), sd.path / "per_class_iou.png")
        write_json_atomic(sd.path / "metrics.json", metrics)
        log.info("%s: %s; out-of-candidate pixels %.2f%% (ss)", name, report_line(metrics, split),
                 100 * metrics["ooc_share"])
        manifest_metrics = {k: metrics[k] for k in ("miou", "miou_ms", "miou_crf", "miou_final", "ratio_to_full",
                                                    "bound_reason", "ooc_share")
                            if k in metrics}
    return close_stage(sd, items=len(ds), metrics=manifest_metrics)
