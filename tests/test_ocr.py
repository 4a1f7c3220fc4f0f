"""OCR (out-of-candidate rectification): the loss on hand-made logits, its gradient support, the train_seg option,
and eval_seg's out-of-candidate pixel share."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stages import eval_seg, train_seg
from wsss.config import load_config
from wsss.data.base import SegDataset
from wsss.data.palette import save_mask
from wsss.errors import WSSSError
from wsss.losses.ocr import candidate_mask, ocr_loss, out_of_candidate


def hand_logits() -> torch.Tensor:
    """[1, 3, 1, 3]: pixel 0 predicts dog (2), pixel 1 background (0), pixel 2 dog again."""
    pixels = [[0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [2.5, 0.0, 3.0]]
    return torch.tensor(pixels).T.reshape(1, 3, 1, 3).clone().requires_grad_(True)


def test_candidates_always_include_background() -> None:
    cand = candidate_mask(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert cand.tolist() == [[True, True, False], [True, False, False]]
    pred = torch.tensor([[[0, 1, 2]], [[0, 1, 2]]])
    assert out_of_candidate(pred, cand).tolist() == [[[False, False, True]], [[False, True, True]]]


def test_loss_equals_the_hand_computed_group_ranking_value() -> None:
    logits = hand_logits()
    cand = candidate_mask(torch.tensor([[1.0, 0.0]]))  # labels {cat}: IC = {bg, cat}, OC = {dog}
    # pixel 0: relu(1 + 3 - 0) = 4, relu(1 + 3 - 1) = 3 -> 3.5; pixel 2: relu(1 + 3 - 2.5) = 1.5, 4 -> 2.75
    # default reduction: divided by all 3 pixels of the batch; 'ooc': by the 2 OC pixels
    assert ocr_loss(logits, cand, margin=1.0).item() == pytest.approx((3.5 + 2.75) / 3)
    assert ocr_loss(logits, cand, margin=1.0, reduction="ooc").item() == pytest.approx((3.5 + 2.75) / 2)
    # margin 0: pixel 0 -> (3 + 2) / 2, pixel 2 -> (0.5 + 3) / 2
    assert ocr_loss(logits, cand, margin=0.0, reduction="ooc").item() == pytest.approx((2.5 + 1.75) / 2)
    with pytest.raises(ValueError, match="reduction"):
        ocr_loss(logits, cand, reduction="mean")


def test_gradient_reaches_only_out_of_candidate_pixels() -> None:
    logits = hand_logits()
    ocr_loss(logits, candidate_mask(torch.tensor([[1.0, 0.0]])), margin=1.0).backward()
    g = logits.grad[0, :, 0]  # [C, W]
    assert torch.equal(g[:, 1], torch.zeros(3))
    # pixel 0: d/ds_dog = (1 + 1) / 2 / 3 pixels, d/ds_bg = d/ds_cat = -1/2 / 3
    assert g[:, 0].tolist() == pytest.approx([-1 / 6, -1 / 6, 1 / 3])
    assert g[:, 2].tolist() == pytest.approx([-1 / 6, -1 / 6, 1 / 3])


def test_zero_when_every_prediction_is_in_candidate() -> None:
    logits = hand_logits()
    loss = ocr_loss(logits, candidate_mask(torch.tensor([[1.0, 1.0]])))  # dog is a label now
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_train_seg_ocr_option_is_validated(tmp_path: Path) -> None:
    def sec(**ocr: object) -> dict:
        p = tmp_path / f"c{len(list(tmp_path.iterdir()))}.py"
        p.write_text(f"train_seg = dict(ocr={ocr!r})\n")
        return train_seg.section(load_config(p))["ocr"]

    assert sec() is None
    assert sec(weight=0.5) == {"weight": 0.5, "margin": 1.0, "reduction": "pixels"}
    with pytest.raises(WSSSError, match=r"unknown train_seg.ocr key\(s\) \['marg'\]"):
        sec(marg=1.0)
    with pytest.raises(WSSSError, match=r"train_seg.ocr.reduction must be one of \['pixels', 'ooc'\]"):
        sec(reduction="mean")


def test_eval_seg_reports_the_out_of_candidate_share(tmp_path: Path) -> None:
    gt = {"a": np.array([[0, 1], [0, 1]], np.uint8), "b": np.array([[0, 0], [2, 2]], np.uint8)}
    (tmp_path / "img").mkdir()
    for i, m in gt.items():
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), np.full((2, 2, 3), 9, np.uint8))
        save_mask(tmp_path / "gt" / f"{i}.png", m)
    ds = SegDataset("t", "val", list(gt), ["background", "cat", "dog"], tmp_path / "img", {"a": [1], "b": [2]},
                    mask_dir=tmp_path / "gt")
    preds = {"a": np.array([[2, 1], [2, 0]], np.uint8), "b": np.array([[1, 0], [2, 2]], np.uint8)}
    for i, p in preds.items():
        save_mask(tmp_path / "preds" / f"{i}.png", p)
    # a: two dog pixels (dog not a label of a); b: one cat pixel -> 3 of 8 pixels
    assert eval_seg.ooc_pixels(preds["a"], ds.label_vector("a")) == (2, 4)
    ooc = {"ss": torch.zeros(2, dtype=torch.int64)}
    eval_seg.score_predictions(ds, ds.ids, {"ss": tmp_path / "preds"}, ooc=ooc)
    assert ooc["ss"].tolist() == [3, 8]
    assert eval_seg.ooc_summary(ooc) == {"ooc_share_ss": 0.375, "ooc_share": 0.375}


def test_train_seg_with_ocr_trains_and_logs_a_loss(tmp_path: Path) -> None:
    from tests.test_train_seg import write_config
    from wsss.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "syn", num_train=4, num_val=1, seed=3, size=32)
    torch.set_num_threads(1)
    cfg = load_config(write_config(tmp_path / "c.py", tmp_path / "syn", tmp_path / "wd", iters=2,
                                   ocr=dict(weight=1.0, margin=1.0)))
    manifest = train_seg.run(cfg)
    assert manifest["status"] == "complete" and np.isfinite(manifest["metrics"]["loss_last"])


def test_chunked_pixels_give_the_same_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    import wsss.losses.ocr as ocr_module

    logits = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    cand = candidate_mask(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    whole = ocr_loss(logits, cand, 0.5)
    monkeypatch.setattr(ocr_module, "_CHUNK", 3)
    assert ocr_loss(logits, cand, 0.5).item() == pytest.approx(whole.item(), rel=1e-6) and whole.item() > 0
