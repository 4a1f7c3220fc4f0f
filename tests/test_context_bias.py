"""benchmarks/context_bias.py: the tables and target verdicts from hand-made metrics files (the runs themselves
take an hour; their mechanics are the stages' own tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks import context_bias as cb  # noqa: E402


def cam_metrics(path: Path, miou: float, precision: tuple[float, float], recall: tuple[float, float]) -> None:
    """A CAM stage's metrics.json: two foreground classes plus one without ground-truth pixels (left out)."""
    per_class = {"background": {"precision": 0.9, "recall": 0.9, "gt_pixels": 100},
                 "a": {"precision": precision[0], "recall": recall[0], "gt_pixels": 10},
                 "b": {"precision": precision[1], "recall": recall[1], "gt_pixels": 10},
                 "c": {"precision": None, "recall": None, "gt_pixels": 0}}
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"miou": miou, "summary": {"per_class": per_class},
                                                   "oracle": {"miou": miou + 0.01, "threshold": 0.55}}))


def seg_metrics(path: Path, miou: float, ooc: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"miou": miou, "miou_final": miou + 0.01, "ooc_share": ooc}))


def test_cam_quality_averages_precision_and_recall_over_classes_with_ground_truth(tmp_path: Path) -> None:
    cam_metrics(tmp_path / "s", 0.5, (0.4, 0.6), (0.8, 0.7))
    q = cb.cam_quality(tmp_path / "s" / "metrics.json")
    assert q == pytest.approx({"miou": 0.5, "precision": 0.5, "recall": 0.75, "oracle": 0.51, "oracle_t": 0.55})
    assert cb.cam_quality(tmp_path / "missing" / "metrics.json") is None


def test_precision_target_is_met_only_with_ten_points_and_at_most_five_recall_lost(tmp_path: Path) -> None:
    dirs = []
    for s, d in enumerate((0.00, 0.01, -0.01)):
        base, wood = tmp_path / f"seed{s}", tmp_path / f"seed{s}_wood"
        cam_metrics(base / "make_cam", 0.45, (0.40 + d, 0.42 + d), (0.80, 0.78))
        cam_metrics(base / "debias", 0.52, (0.53 + d, 0.55 + d), (0.78, 0.76))  # +13 precision, -2 recall
        cam_metrics(wood / "make_cam", 0.46, (0.55 + d, 0.57 + d), (0.70, 0.68))  # +15 precision, -10 recall
        cam_metrics(wood / "debias", 0.47, (0.42 + d, 0.44 + d), (0.80, 0.78))  # +2 precision
        dirs.append((base, wood))
    res = cb.seed_rows(dirs)
    assert [round(r["precision"], 4) for r in res["debias (MARS-style)"]] == [0.54, 0.55, 0.53]
    verdicts = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[-1]
                for line in cb.seeds_table(res, True).splitlines()[2:]}
    assert verdicts == {"baseline (seed CAMs)": "-", "debias (MARS-style)": "met", "W-OoD": "MISSED",
                        "W-OoD + debias": "MISSED"}
    assert "+13.0 ± 0.0" in cb.seeds_table(res, True)


def test_chain_gain_is_paired_by_seed_and_needs_five_points_beyond_twice_the_spread(tmp_path: Path) -> None:
    bases = []
    for s, (plain, composed, ocr) in enumerate(((0.70, 0.77, 0.005), (0.72, 0.80, -0.004), (0.71, 0.77, 0.002))):
        b = tmp_path / f"seed{s}"
        seg_metrics(b / "eval_seg", plain, 0.004)
        seg_metrics(b / "eval_seg_ocr", plain + ocr, 0.001)
        seg_metrics(b / "eval_seg_debias_t40_ocr", composed, 0.001)
        bases.append(b)
    table, gains = cb.chain_table(bases)
    (label, gain), = gains.items()
    assert label.startswith("debias -> walk") and cb.seg_target_verdict(gain) == "met"
    assert gain.stats.mean == pytest.approx(0.07) and gain.stats.std == pytest.approx(0.01) and gain.shown
    ocr_row = next(line for line in table.splitlines() if line.startswith("| + OCR"))
    assert "not shown (+0.1 ± 0.5)" in ocr_row and "| 0.10 ± 0.00 % |" in ocr_row


def test_wood_composition_row_pairs_with_the_plain_chain_and_misses_within_the_spread(tmp_path: Path) -> None:
    bases, woods = [], []
    for s, (plain, composed) in enumerate(((0.70, 0.80), (0.72, 0.73), (0.71, 0.77))):  # gains +10, +1, +6
        b, w = tmp_path / f"seed{s}", tmp_path / f"seed{s}_wood"
        seg_metrics(b / "eval_seg", plain, 0.004)
        seg_metrics(b / "eval_seg_debias_t40_ocr", plain + 0.01, 0.001)
        seg_metrics(w / "eval_seg_debias_t40_ocr", composed, 0.001)
        bases.append(b)
        woods.append(w)
    table, gains = cb.chain_table(bases, woods)
    wood = gains[next(k for k in gains if k.startswith("W-OoD"))]
    assert wood.stats.mean == pytest.approx(17 / 300) and wood.stats.std == pytest.approx(0.0451, abs=1e-4)
    assert not wood.shown and cb.seg_target_verdict(wood) == "MISSED"  # mean 5.7 but spread 4.5: not shown
    assert any(line.startswith("| W-OoD + debias") for line in table.splitlines())


def test_long_composition_row_pairs_with_the_chains_own_long_network(tmp_path: Path) -> None:
    bases = []
    for s, (short, long_plain, long_composed) in enumerate(((0.70, 0.75, 0.83), (0.72, 0.78, 0.84),
                                                            (0.71, 0.76, 0.83))):
        b = tmp_path / f"seed{s}"
        seg_metrics(b / "eval_seg", short, 0.004)
        seg_metrics(b / "eval_seg_debias_t40_ocr", short + 0.01, 0.001)
        seg_metrics(b / "eval_seg_long", long_plain, 0.004)
        seg_metrics(b / "eval_seg_debias_t40_ocr_long", long_composed, 0.001)
        bases.append(b)
    table, gains = cb.chain_table(bases)
    long_label = next(k for k in gains if k.endswith("1440 iterations"))
    g = gains[long_label]  # paired with eval_seg_long: +8, +6, +7, not with the 240-iteration chain
    assert g.stats.mean == pytest.approx(0.07) and g.stats.std == pytest.approx(0.01)
    assert cb.seg_target_verdict(g) == "met"
    assert any(line.startswith("| baseline at the bound's 1440") and "| 76.3 ± 1.5 |" in line
               for line in table.splitlines())
    # without the long files there is no long row
    assert not any(k.endswith("1440 iterations") for k in cb.chain_table([tmp_path / "none"])[1])


def test_wood_variant_table_pairs_each_setting_with_the_baseline_of_its_seed(tmp_path: Path) -> None:
    q, w = tmp_path / "quality", tmp_path / "context"
    for s, d in enumerate((0.0, 0.02)):
        base, wood = cb.bias_dirs(w, q, cb.DEFAULT_BIAS, s)
        cam_metrics(base / "make_cam", 0.45, (0.40 + d, 0.42 + d), (0.80, 0.78))
        cam_metrics(wood / "make_cam", 0.47, (0.43 + d, 0.45 + d), (0.80, 0.78))
        cam_metrics(cb.wood_variant_dir(w, s, "adv") / "make_cam", 0.48, (0.45 + 2 * d, 0.47 + 2 * d), (0.8, 0.8))
    lines = cb.wood_variant_table(w, q, [0, 1], ["adv"]).splitlines()
    assert len(lines) == 5 and lines[2].startswith("| baseline (seed CAMs) | 2 |") and lines[2].endswith("| - |")
    assert lines[3].endswith("| +3.0 ± 0.0 |")  # configured W-OoD: +3 on both seeds
    assert "{'adv_step': 0.07}" in lines[4] and lines[4].endswith("| +6.0 ± 1.4 |")  # +5, +7


def test_real_photo_wood_table_pairs_runs_by_seed(tmp_path: Path) -> None:
    from benchmarks import quality_real as qr

    dirs = {}
    for k, (plain, wood) in enumerate(zip(("heldout", "seed1", "seed2"), ("wood", "wood_seed1", "wood_seed2"))):
        for name, p, m in ((plain, 0.40, 0.60), (wood, 0.42 + 0.01 * k, 0.61)):
            cam_metrics(tmp_path / name / "make_cam", 0.30, (p, p), (0.7, 0.7))
            (tmp_path / name / "train_cls").mkdir(parents=True)
            (tmp_path / name / "train_cls" / "metrics.json").write_text(json.dumps({"val_map": m}))
            dirs[name] = tmp_path / name
    for name, v in (("heldout", 0.28), ("wood", 0.30)):  # the chain of seed 0: pseudo masks only
        (tmp_path / name / "make_pseudo").mkdir()
        (tmp_path / name / "make_pseudo" / "metrics.json").write_text(json.dumps({"miou": 0.35,
                                                                                   "miou_ignore_as_wrong": v}))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in qr.wood_table(dirs).splitlines()[2:]}
    assert rows["classifier mAP"].endswith("| +1.0 ± 0.0 |")
    assert rows["seed CAMs: fg precision"].endswith("| +3.0 ± 1.0 |")  # +2, +3, +4
    assert rows["seed CAMs: mIoU"].endswith("| not shown (+0.0 ± 0.0) |")
    assert "| 28.0 | 30.0 | +2.0 (1 seed, no spread) |" in rows[
        "pseudo masks (PAR, band 0.30/0.05) (undecided = wrong), seed 0"]


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_false_positive_split_of_whole_image_cams_on_generated_data(tmp_path: Path, bias: float) -> None:
    """CAMs that cover the whole image for every labelled class: precision is the object share of the labelled
    pixels; at bias 1 every object lies on its class's own background (and an image holds one class), so no
    false positive is 'elsewhere'; at bias 0 none lies on it, so none is 'context'."""
    import numpy as np

    from wsss.cam.io import save_cam
    from wsss.data.build import build_dataset
    from wsss.data.synthetic import generate_synthetic
    from wsss.config import load_config

    root = tmp_path / "data"
    generate_synthetic(root, num_train=6, num_val=0, seed=3, size=48, bias=bias)
    ds = build_dataset(load_config(str(cb.ROOT / cb.QUALITY), {"data.root": str(root)}, str(tmp_path)).data,
                       "train")
    cams = tmp_path / "make_cam"
    tp, fp = np.zeros(ds.num_classes), np.zeros(ds.num_classes)
    for i in ds.ids:
        keys = sorted(ds.labels[i])
        mask = ds.mask(i)
        save_cam(cams / "cams" / f"{i}.npz", keys, np.ones((len(keys), *mask.shape), np.float32))
        c = keys[0]  # the winner of tied maps is the first key
        tp[c] += (mask == c).sum()
        fp[c] += ((mask != c) & (mask != 255)).sum()
    (cams / "metrics.json").write_text("{}")
    both = cb.false_positive_split(cams, root, near_px=(4.0, 8.0))
    r = both[4.0]
    assert both[8.0]["fp_near"] >= r["fp_near"]  # a wider band only moves false positives into 'near'
    assert both[8.0]["precision"] == pytest.approx(r["precision"])
    present = [c for c in range(1, ds.num_classes) if any(c in ds.labels[i] for i in ds.ids)]
    expected = np.mean([tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0 for c in present])
    assert r["precision"] == pytest.approx(expected)
    assert r["share_near"] + r["share_context"] + r["share_other"] == pytest.approx(1.0)
    if bias == 1.0:
        assert r["fp_other"] == 0 and r["fp_context"] > 0
    else:
        assert r["fp_context"] == 0 and r["precision_without_context"] == pytest.approx(r["precision"])


def test_real_photo_debias_table_pairs_the_seed_cams_with_their_debiased_twin(tmp_path: Path) -> None:
    from benchmarks import quality_real as qr

    dirs = {}
    for k, name in enumerate(qr.DEBIAS_RUNS):
        cam_metrics(tmp_path / name / "make_cam", 0.30, (0.35, 0.35), (0.70, 0.70))
        cam_metrics(tmp_path / name / "debias", 0.30 - 0.01 * k, (0.38, 0.38), (0.70 - 0.1 * k, 0.70 - 0.1 * k))
        dirs[name] = tmp_path / name
    rows = {line.split(" | ")[0].lstrip("| "): line for line in qr.debias_table(dirs).splitlines()[2:]}
    assert rows["fg precision"].endswith("| +3.0 ± 0.0 |")
    assert rows["fg recall"].endswith("| not shown (-10.0 ± 10.0) |")  # -0, -10, -20: within twice the spread
    assert rows["mIoU"].endswith("| not shown (-1.0 ± 1.0) |")
