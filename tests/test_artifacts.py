"""The artifact store: atomic writes, manifests, skip / refuse / force, and resume after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wsss.artifacts import (MANIFEST, StageDir, atomic_path, read_manifest, remove_stale_temps,
                            require_complete, write_json_atomic)
from wsss.cam.io import dense_scores, load_cam, save_cam
from wsss.errors import InputError, StageMismatchError, WSSSError

from conftest import subprocess_env


def test_atomic_path_leaves_target_untouched_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_path_keeps_suffix_for_numpy(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, a=np.arange(3))
    with np.load(tmp_path / "x.npz") as z:
        assert z["a"].tolist() == [0, 1, 2]


def test_stage_skips_when_complete_and_refuses_mismatch(tmp_path: Path) -> None:
    sd = StageDir(tmp_path, "make_cam", "hash-a", inputs={"train_cls": "fp1"})
    assert sd.begin() is False
    assert read_manifest(sd.path)["status"] == "running"
    (sd.path / "cams").mkdir()
    (sd.path / "cams" / "old.npz").write_bytes(b"x")
    sd.finish(items=3, metrics={"miou": 0.5})
    m = require_complete(tmp_path, "make_cam")
    assert m["items"] == 3 and m["metrics"]["miou"] == 0.5 and m["inputs"] == {"train_cls": "fp1"}

    again = StageDir(tmp_path, "make_cam", "hash-a", inputs={"train_cls": "fp1"})
    assert again.begin() is True  # complete and identical: no-op

    other_cfg = StageDir(tmp_path, "make_cam", "hash-b", inputs={"train_cls": "fp1"})
    with pytest.raises(StageMismatchError, match="config hash hash-a != hash-b"):
        other_cfg.begin()
    other_input = StageDir(tmp_path, "make_cam", "hash-a", inputs={"train_cls": "fp2"})
    with pytest.raises(StageMismatchError, match="input 'train_cls' fp1 != fp2"):
        other_input.begin()

    assert other_cfg.begin(force=True) is False
    assert not (sd.path / "cams" / "old.npz").exists()
    assert read_manifest(sd.path)["config_hash"] == "hash-b"


def test_require_complete_names_the_missing_stage(tmp_path: Path) -> None:
    with pytest.raises(WSSSError, match="'make_cam' has not been run"):
        require_complete(tmp_path, "make_cam")
    StageDir(tmp_path, "make_cam", "h").begin()
    with pytest.raises(WSSSError, match="is running, not complete"):
        StageDir.from_inputs(tmp_path, "make_pseudo", "h2", ["make_cam"])


def test_remove_stale_temps(tmp_path: Path) -> None:
    (tmp_path / ".a.tmp-123.npz").write_bytes(b"")
    (tmp_path / "a.npz").write_bytes(b"")
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_cam_roundtrip_and_dense_scores(tmp_path: Path) -> None:
    cams = np.stack([np.full((2, 3), 0.25), np.full((2, 3), 1.5)])
    save_cam(tmp_path / "c.npz", [3, 7], cams)
    keys, loaded = load_cam(tmp_path / "c.npz")
    assert keys.tolist() == [3, 7] and loaded.shape == (2, 2, 3)
    assert np.allclose(loaded[0], 0.25) and np.allclose(loaded[1], 1.0)  # clipped to [0, 1]
    dense = dense_scores(keys, loaded, num_classes=8, bg=0.3)
    assert np.allclose(dense[0], 0.3) and np.isneginf(dense[1]).all() and np.allclose(dense[7], 1.0)
    assert set(np.unique(dense.argmax(0))) == {7}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz: unreadable CAM file"):
        load_cam(tmp_path / "bad.npz")


WRITER = r'''
import sys, time, hashlib
from pathlib import Path
from wsss.artifacts import StageDir, atomic_path
out = Path(sys.argv[1]); slow = sys.argv[2] == "slow"
sd = StageDir(out, "writer", "cfg", {})
if sd.begin():
    sys.exit(0)
for i in range(8):
    target = sd.path / "items" / f"{i}.bin"
    if target.exists():
        continue
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            for chunk in range(4):
                fh.write(hashlib.sha256(f"{i}-{chunk}".encode()).digest() * 1000)
                fh.flush()
                if slow and i == 3 and chunk == 2:
                    (out / "mid_write").write_text("x")
                    time.sleep(60)
sd.finish(items=8)
'''


def _run_writer(out: Path, slow: bool) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(out), "slow" if slow else "fast"],
                            env=subprocess_env())


def test_killed_writer_leaves_no_partial_file_and_resumes(tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    assert _run_writer(ref_dir, slow=False).wait(60) == 0

    proc = _run_writer(run_dir, slow=True)
    deadline = time.time() + 60
    while not (run_dir / "mid_write").exists():
        assert time.time() < deadline and proc.poll() is None, "writer never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    items = run_dir / "writer" / "items"
    finals = sorted(p.name for p in items.iterdir() if not p.name.startswith("."))
    temps = [p.name for p in items.iterdir() if p.name.startswith(".")]
    assert finals == ["0.bin", "1.bin", "2.bin"]  # item 3 was mid-write: it must not exist
    assert len(temps) == 1  # the half-written temp is left for the resume to clean
    assert read_manifest(run_dir / "writer")["status"] == "running"

    assert _run_writer(run_dir, slow=False).wait(60) == 0
    assert not [p for p in items.iterdir() if p.name.startswith(".")]
    for i in range(8):
        a = (ref_dir / "writer" / "items" / f"{i}.bin").read_bytes()
        b = (items / f"{i}.bin").read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert read_manifest(run_dir / "writer")["status"] == "complete"


def test_write_json_atomic(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / MANIFEST, {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / MANIFEST).read_text()) == {"a": [1, 2], "b": 1}
