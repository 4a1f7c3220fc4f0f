"""benchmarks/quality_synthetic.py --quick: the mechanics of the quality benchmark (numbers mean nothing)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, subprocess_env


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("qs")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality_synthetic.py"), "--quick",
                          "--work-root", str(root), "--threads", "1"], env=subprocess_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out.stdout


def test_every_seed_runs_the_whole_chain_with_the_bound_curve(quick: tuple[Path, str]) -> None:
    root, stdout = quick
    for seed in (0, 1):
        wd = root / f"seed{seed}"
        for stage in ("make_cam", "propagate_par", "propagate", "make_pseudo_thr", "make_pseudo_band",
                      "make_pseudo", "eval_seg_gt", "eval_seg", "eval_seg_long"):
            assert json.loads((wd / stage / "manifest.json").read_text())["status"] == "complete", stage
        for long in ("train_seg_gt", "train_seg_long"):  # 8 points of 4 quick iterations: one per iteration
            curve = json.loads((wd / long / "curve.json").read_text())
            assert [p["fraction"] for p in curve["points"]] == [0.25, 0.5, 0.75, 1.0]
            assert json.loads((wd / long / "manifest.json").read_text())["config"]["train_seg"]["iters"] == 4
        assert json.loads((wd / "train_seg" / "manifest.json").read_text())["config"]["seed"] == seed
    assert (root / "report.md").read_text().strip() in stdout


def test_report_rows_baselines_and_verdicts(quick: tuple[Path, str]) -> None:
    root, stdout = quick
    assert "--quick: mechanics only" in stdout and "Regime MISSED" in stdout  # 64 px: an 8 x 8 grid
    assert "| CAM grid | 8 x 8 | >= 24 (MISSED)" in stdout
    for label in ("seed CAMs", "PAR", "random walk", "CRF of the seeds", "walk at its threshold", "IRN band",
                  "walk + CRF (configured)", "DeepLabV3+ on pseudo masks", "fully supervised bound"):
        assert label in stdout, label
    # the mean ± std of the seed row is the mean / sample std of the two seeds' own metrics.json
    vals = [json.loads((root / f"seed{s}" / "make_cam" / "metrics.json").read_text())["miou"] for s in (0, 1)]
    want = f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals, ddof=1):.1f}"
    row = next(l for l in stdout.splitlines() if l.startswith("| seed CAMs"))
    assert want in row, (want, row)
    # the all-background baseline on train, by hand from the generated masks: IoU(bg) over the classes present
    # (a class absent from ground truth and prediction has no IoU)
    from PIL import Image

    ids = (root / "data" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    gts = [np.array(Image.open(root / "data" / "SegmentationClass" / f"{i}.png")) for i in ids]
    bg_iou = sum(int((g == 0).sum()) for g in gts) / sum(int((g != 255).sum()) for g in gts)
    row = next(l for l in stdout.splitlines() if l.startswith("| baseline, no model: all background | train"))
    present = len(set(np.unique(np.concatenate([g.ravel() for g in gts])).tolist()) - {255})
    assert f"| {100 * bg_iou / present:.1f} |" in row, row
    # every ratio cell is a number with % or the verdict, never a ratio to an unconverged bound
    for line in stdout.splitlines():
        if line.startswith("| DeepLabV3+ on pseudo masks"):
            cell = line.split("|")[6].strip()
            assert cell == "bound not converged" or re.fullmatch(r"\d+\.\d %", cell), cell
    assert "Targets:" in stdout and "Missed:" in stdout


def saved_vit_row(out_dir: Path, variant: str, seed: int, miou: float, oracle: float, overrides: dict) -> None:
    d = out_dir / f"{variant}_seed{seed}"
    d.mkdir(parents=True)
    (d / "quality_row.json").write_text(json.dumps({
        "variant": variant, "seed": seed, "overrides": overrides, "miou": miou, "bg_threshold": 0.5,
        "oracle_miou": oracle, "oracle_threshold": 0.6, "val_map": 0.9}))


def test_toco_rows_pair_saved_rows_by_seed_and_refuse_rows_of_other_options(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.quality_synthetic import VIT_REGIME, toco_rows
    from benchmarks.quality_toco import VARIANTS

    for seed, (t, c) in enumerate(((0.60, 0.50), (0.64, 0.52))):  # ToCo +10 and +12 at 0.5; oracle +1 and +3
        saved_vit_row(tmp_path, "toco", seed, t, 0.70 + 0.02 * seed, {**VARIANTS["toco"][1], **VIT_REGIME})
        saved_vit_row(tmp_path, "cls_only", seed, c, 0.69, {**VARIANTS["cls_only"][1], **VIT_REGIME})
    table = toco_rows(tmp_path / "data", tmp_path, [0, 1, 2], compute=False)  # seed 2 never ran: left out
    assert "| toco | 2 | 62.0 ± 2.8 @ 0.50 | 71.0 ± 1.4 (0.60) |" in table
    assert "| ToCo gain over cls-only, at the configured threshold | - | +11.0 ± 1.4 |" in table
    assert "| ToCo gain over cls-only, at each one's ORACLE threshold | - | not shown (+2.0 ± 1.4) |" in table
    (tmp_path / "toco_seed1" / "quality_row.json").write_text(json.dumps({"overrides": {}}))  # the 96 px crops
    with pytest.raises(SystemExit, match="made with options"):
        toco_rows(tmp_path / "data", tmp_path, [0, 1], compute=False)


def test_ratios_to_the_bound_are_cut_not_rounded() -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.quality_synthetic import cut_percent
    from wsss.eval.bound import NOT_CONVERGED

    assert cut_percent(0.849986, 2) == "84.99 %" and cut_percent(0.849986, 1) == "84.9 %"  # rounding: 85.00 / 85.0
    assert cut_percent(0.85, 2) == "85.00 %" and cut_percent(0.765, 1) == "76.5 %"  # exact values stay exact
    assert cut_percent(NOT_CONVERGED, 1) == NOT_CONVERGED and cut_percent(None, 2) == "-"
