"""The whole chain on a tiny synthetic set: runs, skips when complete, and resumes after SIGKILL to the same result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, subprocess_env

CONFIG = REPO / "tests" / "data" / "tiny_pipeline.py"
STAGES = ["train_cls", "make_cam", "propagate_par", "make_pseudo", "train_seg", "eval_seg"]


def _cmd(work: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "tools" / "run_pipeline.py"), str(CONFIG), "--work-dir", str(work),
            "--cfg-options", f"data.root={data}", *extra]


def _run(work: Path, data: Path, *extra: str) -> str:
    out = subprocess.run(_cmd(work, data, *extra), env=subprocess_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("e2e")
    work, data = root / "work", root / "data"
    stdout = _run(work, data)
    return work, data, stdout


def test_pipeline_runs_every_stage_and_reports(uninterrupted: tuple[Path, Path, str]) -> None:
    work, data, stdout = uninterrupted
    assert (data / "synthetic.json").is_file()
    for stage in STAGES:
        m = json.loads((work / stage / "manifest.json").read_text())
        assert m["status"] == "complete", stage
        assert f"{stage}" in stdout and "ran" in stdout
    metrics = json.loads((work / "eval_seg" / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    pseudo = _masks(work / "make_pseudo" / "masks")
    labels = json.loads((data / "labels.json").read_text())
    assert len(pseudo) == 16
    for image_id, mask in pseudo.items():  # only labelled classes, background or ignore
        assert set(np.unique(mask).tolist()) <= set(labels[image_id]) | {0, 255}


def test_second_run_skips_every_stage(uninterrupted: tuple[Path, Path, str]) -> None:
    work, data, _ = uninterrupted
    before = {s: (work / s / "manifest.json").read_text() for s in STAGES}
    stdout = _run(work, data)
    for s in STAGES:
        line = next(l for l in stdout.splitlines() if l.startswith(s + " "))
        assert "skipped" in line, line
        assert (work / s / "manifest.json").read_text() == before[s]


def test_changed_config_is_refused_downstream(uninterrupted: tuple[Path, Path, str]) -> None:
    work, data, _ = uninterrupted
    out = subprocess.run(_cmd(work, data, "pseudo.bg_threshold=0.4", "--from", "make_pseudo"), env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "make_pseudo: holds artifacts of a different run" in out.stderr and "--force" in out.stderr


def test_pipeline_killed_mid_stage_resumes_to_the_same_result(
        uninterrupted: tuple[Path, Path, str], tmp_path: Path) -> None:
    ref_work, data, _ = uninterrupted
    work = tmp_path / "work"
    proc = subprocess.Popen(_cmd(work, data), env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    ckpt = work / "train_seg" / "last.pth"
    while not ckpt.exists():  # kill inside train_seg, after its first checkpoint
        assert proc.poll() is None, "pipeline ended before it could be killed"
        assert time.time() < deadline, "train_seg never wrote a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert json.loads((work / "train_seg" / "manifest.json").read_text())["status"] == "running"
    assert not (work / "eval_seg").exists()

    # A plain re-run must not throw the checkpoint away (it used to log 'training from scratch').
    before = ckpt.read_bytes()
    plain = subprocess.run(_cmd(work, data), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "an interrupted run stopped at iteration" in plain.stderr
    assert "pass --resume to continue it" in plain.stderr and "Traceback" not in plain.stderr
    assert ckpt.read_bytes() == before

    stdout = _run(work, data, "--resume")
    for s in ["train_cls", "make_cam", "propagate_par", "make_pseudo"]:
        assert "skipped" in next(l for l in stdout.splitlines() if l.startswith(s + " "))
    ref = json.loads((ref_work / "eval_seg" / "metrics.json").read_text())
    got = json.loads((work / "eval_seg" / "metrics.json").read_text())
    assert got["miou"] == ref["miou"]
    ref_preds, got_preds = _masks(ref_work / "eval_seg" / "preds"), _masks(work / "eval_seg" / "preds")
    assert ref_preds.keys() == got_preds.keys() and ref_preds
    assert all(np.array_equal(ref_preds[k], got_preds[k]) for k in ref_preds)


def test_force_remakes_only_the_stages_that_changed(uninterrupted: tuple[Path, Path, str], tmp_path: Path) -> None:
    ref_work, data, _ = uninterrupted
    work = tmp_path / "work"
    shutil.copytree(ref_work, work)
    kept = {p: p.stat().st_mtime_ns for p in (work / "train_cls").rglob("*") if p.is_file()}
    out = subprocess.run(_cmd(work, data, "cam.scales=[1.0]", "--until", "make_cam", "--force"),
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {l.split()[0]: l for l in out.stdout.splitlines() if l.split() and l.split()[0] in STAGES}
    assert "skipped" in lines["train_cls"] and "ran" in lines["make_cam"]
    assert {p: p.stat().st_mtime_ns for p in (work / "train_cls").rglob("*") if p.is_file()} == kept
    removal = next(l for l in out.stderr.splitlines() if "--force: removing" in l)
    assert "make_cam" in removal and "cam.scales [1.0, 0.5] -> [1.0]" in removal
    assert out.stdout.count("quality") == 1  # the summary table is printed once


def test_ctrl_c_stops_the_pipeline_in_one_line(uninterrupted: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, data, _ = uninterrupted
    work = tmp_path / "work"
    proc = subprocess.Popen(_cmd(work, data), env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (work / "train_cls" / "last.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "pipeline never reached train_cls"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted; artifacts written so far are complete" in err
    assert not (work / "train_cls" / ".lock").exists()


def test_rerun_with_nothing_to_do_answers_without_the_stages(uninterrupted: tuple[Path, Path, str]) -> None:
    work, data, _ = uninterrupted
    fast = subprocess.run(_cmd(work, data), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert fast.returncode == 0 and "nothing changed since the last complete run" in fast.stderr
    assert "== stage" not in fast.stderr  # no stage module was run (nor torch imported)
    assert all("skipped" in next(l for l in fast.stdout.splitlines() if l.startswith(s + " ")) for s in STAGES)
    # A touched data file (same content): the full path checks the real identities, and they still match.
    labels = data / "labels.json"
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 1_000_000_000))
    full = subprocess.run(_cmd(work, data), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert full.returncode == 0 and "nothing changed" not in full.stderr and "== stage 1/6" in full.stderr
    assert all("skipped" in next(l for l in full.stdout.splitlines() if l.startswith(s + " ")) for s in STAGES)
