"""Evaluation of the segmentation network: hand-computed mIoU of a known prediction, sliding / flip / multi-scale
inference, the eval_seg stage's artifacts, its per-image resume and the WSSS / fully supervised ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from stages import eval_seg, train_seg
from wsss.artifacts import MANIFEST, StageDir, read_manifest, write_json_atomic
from wsss.config import load_config
from wsss.data.base import SegDataset
from wsss.data.palette import load_mask, save_mask
from wsss.data.synthetic import generate_synthetic
from wsss.eval.confusion import ConfusionMatrix
from wsss.eval.seg_infer import forward_sliding, forward_whole, predict_probs


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions run far faster single-threaded on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class FixedLogits(torch.nn.Module):
    """A 'model' that predicts the same label map for every image: logits = 10 * one-hot(labels)."""

    def __init__(self, labels: np.ndarray, num_classes: int) -> None:
        super().__init__()
        onehot = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), num_classes)
        self.register_buffer("logits", 10.0 * onehot.permute(2, 0, 1).float()[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2:] == self.logits.shape[2:]
        return self.logits.expand(x.shape[0], -1, -1, -1)


def tiny_dataset(root: Path, masks: dict[str, np.ndarray], class_names: list[str]) -> SegDataset:
    (root / "img").mkdir(parents=True)
    for image_id, m in masks.items():
        cv2.imwrite(str(root / "img" / f"{image_id}.png"), np.full((*m.shape, 3), 128, np.uint8))
        save_mask(root / "gt" / f"{image_id}.png", m)
    return SegDataset("tiny", "val", list(masks), class_names, root / "img", {}, mask_dir=root / "gt")


def test_known_prediction_gives_the_hand_computed_miou(tmp_path: Path) -> None:
    pred = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    gt = {"a": np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8),
          "b": np.array([[0, 1, 1, 1], [255, 255, 2, 2]], np.uint8)}
    ds = tiny_dataset(tmp_path, gt, ["background", "cat", "dog"])
    sec = eval_seg.section(load_config_from(tmp_path, eval_seg=dict(scales=[1.0], flip=False)))
    dirs = eval_seg.pred_dirs(tmp_path / "stage", eval_seg.variants(sec))
    assert dirs == {"ss": tmp_path / "stage" / "preds"}
    in_memory = {"ss": ConfusionMatrix(3)}
    eval_seg.predict_split(FixedLogits(pred, 3), ds, ds.ids, sec, torch.device("cpu"), dirs=dirs,
                           matrices=in_memory)
    mats = eval_seg.score_predictions(ds, ds.ids, dirs)
    # rows = truth, cols = prediction; the two ignored pixels of b are not counted
    #   a: bg->bg 4, cat->cat 2, cat->dog 2;  b: bg->bg 1, cat->bg 1, cat->cat 2, dog->dog 2
    expected = np.array([[5, 0, 0], [1, 4, 2], [0, 0, 2]])
    assert np.array_equal(mats["ss"].mat.numpy(), expected)
    assert np.array_equal(in_memory["ss"].mat.numpy(), expected)
    metrics = eval_seg.summarize(mats, ds.class_names, sec)
    # IoU = tp / (row + col - tp): bg 5/(5+6-5), cat 4/(7+4-4), dog 2/(2+4-2)
    assert metrics["per_class"]["background"]["iou"] == pytest.approx(5 / 6, abs=1e-6)
    assert metrics["per_class"]["cat"]["iou"] == pytest.approx(4 / 7, abs=1e-6)
    assert metrics["per_class"]["dog"]["iou"] == pytest.approx(2 / 4, abs=1e-6)
    assert metrics["miou"] == pytest.approx((5 / 6 + 4 / 7 + 2 / 4) / 3, abs=1e-6)
    assert metrics["final"] == "ss" and metrics["miou_final"] == metrics["miou"]
    with Image.open(dirs["ss"] / "b.png") as im:
        assert im.mode == "P" and np.array_equal(np.array(im), pred)


def load_config_from(tmp_path: Path, **sections: Any) -> Any:
    path = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*.py')))}.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in sections.items()))
    return load_config(path)


def test_sliding_window_equals_whole_image_for_a_pointwise_model() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        whole = forward_whole(model, x)
        slide = forward_sliding(model, x, crop_size=16, stride=11)
    assert slide.shape == whole.shape == (1, 4, 37, 53)
    assert torch.allclose(slide, whole, atol=1e-6)


def test_flip_and_scale_views_average_their_softmax() -> None:
    labels = np.zeros((4, 6), np.int64)
    labels[:, :2] = 1  # left third is class 1: not flip-symmetric
    model = FixedLogits(labels, 2)
    x = torch.zeros(1, 3, 4, 6)
    out = predict_probs(model, x, scales=[1.0], flip=True)
    p = model.logits.softmax(1)
    assert torch.allclose(out.single, p)
    assert torch.allclose(out.probs, (p + p.flip(-1)) / 2)
    assert torch.allclose(out.probs.sum(1), torch.ones(1, 4, 6))
    # a pointwise model sees the same thing in every flipped / rescaled view of a constant image
    conv = torch.nn.Conv2d(3, 3, 1)
    const = torch.ones(1, 3, 9, 11)
    ms = predict_probs(conv, const, scales=[0.5, 1.0, 1.5], flip=True)
    assert torch.allclose(ms.probs, ms.single, atol=1e-5)
    assert predict_probs(conv, const, scales=[0.5, 2.0]).single is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A work_dir holding a 4-iteration train_seg model of a 32 px synthetic set."""
    root = tmp_path_factory.mktemp("evalseg")
    generate_synthetic(root / "data", num_train=4, num_val=3, seed=5, size=32)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = load_config_from(root, work_dir=str(root / "wd"), seed=0, device="cpu", data=data_section(root / "data"),
                           seg_model=dict(backbone="test_resnet", pretrained=False, head_channels=16),
                           train_seg=dict(masks="gt", iters=4, batch_size=2, crop_size=32, num_workers=0))
    train_seg.run(cfg)
    torch.set_num_threads(n)
    return {"root": root, "data": root / "data", "wd": root / "wd"}


def data_section(root: Path) -> dict:
    return dict(type="synthetic", root=str(root), train_split="train", val_split="val", cam_split="train")


def stage_cfg(trained: dict[str, Path], tmp_path: Path, **eval_opts: Any) -> Any:
    return load_config_from(tmp_path, work_dir=str(trained["wd"]), seed=0, device="cpu",
                            data=data_section(trained["data"]), eval_seg=eval_opts)


def test_eval_stage_writes_metrics_plots_and_palette_predictions(trained: dict[str, Path], tmp_path: Path) -> None:
    cfg = stage_cfg(trained, tmp_path, name="eval_seg_ms", scales=[0.75, 1.0], flip=True, crf=True)
    manifest = eval_seg.run(cfg)
    out = trained["wd"] / "eval_seg_ms"
    assert manifest["status"] == "complete" and manifest["inputs"].keys() == {"train_seg"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variants"] == {"ss": "single-scale", "ms": "multi-scale + flip",
                                   "crf": "multi-scale + flip + CRF"}
    assert metrics["final"] == "crf" and metrics["images"] == 3 and metrics["split"] == "val"
    assert set(metrics["per_class"]) == set(metrics["ms"]["per_class"]) and len(metrics["per_class"]) == 7
    assert manifest["metrics"]["miou"] == metrics["miou"] and manifest["metrics"]["miou_ms"] == metrics["miou_ms"]
    for name in ("confusion.png", "per_class_iou.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    ids = sorted(p.stem for p in (out / "preds").glob("*.png"))
    assert ids == ["val_00000", "val_00001", "val_00002"]
    for d in ("preds", "preds_ss", "preds_ms"):
        with Image.open(out / d / "val_00000.png") as im:
            assert im.mode == "P" and im.size == (32, 32)
    # the metrics are those of the saved predictions
    gt = {i: load_mask(trained["data"] / "SegmentationClass" / f"{i}.png") for i in ids}
    cm = ConfusionMatrix(7)
    for i in ids:
        cm.update(load_mask(out / "preds_ms" / f"{i}.png"), gt[i])
    assert metrics["miou_ms"] == pytest.approx(cm.miou(), abs=1e-6)
    line = eval_seg.report_line(metrics, "val")
    assert line.startswith(f"val mIoU {100 * metrics['miou']:.1f} (ss) / {100 * metrics['miou_ms']:.1f} (ms+flip)")


def test_killed_evaluation_resumes_per_image_to_the_same_result(trained: dict[str, Path], tmp_path: Path) -> None:
    cfg = stage_cfg(trained, tmp_path, name="eval_seg_resume", scales=[1.0, 1.25])
    eval_seg.run(cfg)
    out = trained["wd"] / "eval_seg_resume"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("preds*/*.png")}
    metrics_before = json.loads((out / "metrics.json").read_text())
    # what a kill leaves: stage 'running', the last images' final predictions missing, a half-written temp file
    manifest = read_manifest(out)
    manifest["status"] = "running"
    write_json_atomic(out / MANIFEST, manifest)
    (out / "preds" / "val_00002.png").unlink()
    (out / "preds" / "val_00001.png").unlink()
    (out / "preds" / ".val_00001.tmp-999.png").write_bytes(b"partial")
    (out / "metrics.json").unlink()
    assert eval_seg.run(cfg)["status"] == "complete"
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("preds*/*.png")}
    assert after == before and not list(out.rglob("*.tmp-*"))
    metrics_after = json.loads((out / "metrics.json").read_text())
    assert metrics_after["miou"] == metrics_before["miou"] and metrics_after["miou_ms"] == metrics_before["miou_ms"]


def test_ratio_to_the_fully_supervised_upper_bound(trained: dict[str, Path], tmp_path: Path) -> None:
    cfg = stage_cfg(trained, tmp_path, name="eval_seg_ratio", upper_bound="eval_seg_ub")
    manifest = eval_seg.run(cfg)
    out = trained["wd"] / "eval_seg_ratio"
    assert "ratio_to_full" not in json.loads((out / "metrics.json").read_text())
    # the upper bound's evaluation appears later: re-running the complete stage records the ratio
    ub = StageDir(trained["wd"], "eval_seg_ub", "fake")
    ub.begin()
    write_json_atomic(ub.path / "metrics.json", {"miou": 0.5, "miou_final": 0.8})
    ub.finish()
    again = eval_seg.run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ratio_to_full"] == pytest.approx(metrics["miou_final"] / 0.8, abs=1e-6)
    assert metrics["ratio_to_full_ss"] == pytest.approx(metrics["miou"] / 0.5, abs=1e-6)
    assert metrics["upper_bound"]["stage"] == "eval_seg_ub"
    assert again["metrics"]["ratio_to_full"] == metrics["ratio_to_full"]
    assert again["finished"] == manifest["finished"]  # nothing was recomputed
    assert "of fully supervised" in eval_seg.report_line(metrics, "val")


def test_unknown_crf_parameter_is_refused_before_any_work(trained: dict[str, Path],
                                                           tmp_path: Path) -> None:
    from wsss.errors import WSSSError
    cfg = stage_cfg(trained, tmp_path, name="eval_seg_bad", crf=True, crf_params=dict(sigma=3))
    with pytest.raises(WSSSError, match="unknown CRF parameter"):
        eval_seg.run(cfg)
    assert not (trained["wd"] / "eval_seg_bad").exists()


def test_no_ratio_to_an_unconverged_bound(trained: dict[str, Path], tmp_path: Path) -> None:
    # a bound with a class at IoU 0 (the 120-iteration demo bound) gives no ratio, in metrics, manifest
    # and the report line; a bound whose val curve still rises neither
    from wsss.eval.bound import NOT_CONVERGED

    cfg = stage_cfg(trained, tmp_path, name="eval_seg_nc", upper_bound="eval_seg_ub0")
    ub = StageDir(trained["wd"], "eval_seg_ub0", "fake")
    ub.begin()
    write_json_atomic(ub.path / "metrics.json", {"miou": 0.99, "miou_final": 0.99, "final": "ss",
                                                 "input": "train_seg_ub0",
                                                 "per_class": {"background": {"iou": 0.99}, "disc": {"iou": 0.0},
                                                               "star": {"iou": None}}})
    ub.finish()
    manifest = eval_seg.run(cfg)
    metrics = json.loads((trained["wd"] / "eval_seg_nc" / "metrics.json").read_text())
    assert metrics["ratio_to_full"] == NOT_CONVERGED == manifest["metrics"]["ratio_to_full"]
    assert "disc" in metrics["bound_reason"] and "star" not in metrics["bound_reason"]
    line = eval_seg.report_line(metrics, "val")
    assert NOT_CONVERGED in line and "%" not in line
    # the same bound with every class learned, but its curve (train_seg eval_points) rising 5 points at the end
    write_json_atomic(ub.path / "metrics.json", {"miou": 0.99, "miou_final": 0.99, "input": "train_seg_ub0",
                                                 "per_class": {"background": {"iou": 0.99}}})
    (trained["wd"] / "train_seg_ub0").mkdir(exist_ok=True)
    write_json_atomic(trained["wd"] / "train_seg_ub0" / "curve.json",
                      {"points": [{"miou": 0.5}, {"miou": 0.7}, {"miou": 0.94}, {"miou": 0.99}]})
    eval_seg.run(cfg)
    metrics = json.loads((trained["wd"] / "eval_seg_nc" / "metrics.json").read_text())
    assert metrics["ratio_to_full"] == NOT_CONVERGED and "curve" in metrics["bound_reason"]
    # flat at the end: the ratio is the quotient again
    write_json_atomic(trained["wd"] / "train_seg_ub0" / "curve.json",
                      {"points": [{"miou": 0.5}, {"miou": 0.7}, {"miou": 0.985}, {"miou": 0.99}]})
    eval_seg.run(cfg)
    metrics = json.loads((trained["wd"] / "eval_seg_nc" / "metrics.json").read_text())
    assert metrics["ratio_to_full"] == pytest.approx(metrics["miou_final"] / 0.99, abs=1e-6)
    assert metrics["bound_reason"] is None and metrics["upper_bound"]["curve_converged"] is True
