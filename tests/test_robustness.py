"""Nothing lost, nothing silent (issues 18 and 20): --force, locks, changed data, config values, killed workers,
stages without ground truth, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, subprocess_env
from test_make_pseudo import make_cam_workdir, write_config
from wsss.artifacts import LOCK, StageDir, acquire_lock, atomic_path, lock_owner, read_manifest, release_lock
from wsss.config import load_config, parse_overrides
from wsss.data.build import build_dataset
from wsss.data.synthetic import generate_synthetic
from wsss.engine.stage import identity_config
from wsss.errors import ConfigError, StageLockedError, StageMismatchError, WSSSError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, num_train=8, num_val=0, seed=3, size=64)
    return root


# ------------------------------------------------------------------------------------------------------------
# 1. --force re-makes what changed, keeps what did not; says what it removes.

def _complete(work: Path, name: str, cfg_hash: str, inputs=None, files=("a.bin",)) -> StageDir:
    sd = StageDir(work, name, cfg_hash, inputs=inputs or {}, config={"x": {"k": cfg_hash}})
    assert sd.begin() is False
    for f in files:
        (sd.path / f).write_bytes(b"artifact")
    sd.finish(items=len(files))
    return sd


def test_force_changed_keeps_identical_complete_stage_and_replaces_changed_one(tmp_path, caplog):
    a = _complete(tmp_path, "train_cls", "h1")
    before = read_manifest(a.path)
    # run_pipeline --force: an unchanged complete stage is kept (same files, same manifest)...
    assert StageDir(tmp_path, "train_cls", "h1").begin(force="changed") is True
    assert read_manifest(a.path) == before and (a.path / "a.bin").read_bytes() == b"artifact"
    # ...a changed one is replaced, with a line saying how many files go and which values differ.
    b = _complete(tmp_path, "make_cam", "h2", inputs={"train_cls": a.fingerprint}, files=("c1", "c2"))
    changed = StageDir(tmp_path, "make_cam", "h3", inputs={"train_cls": a.fingerprint}, config={"x": {"k": "h3"}})
    with caplog.at_level("WARNING"):
        assert changed.begin(force="changed") is False
    assert not (b.path / "c1").exists()
    assert "removing 2 artifact file(s)" in caplog.text and "x.k \"h2\" -> \"h3\"" in caplog.text
    # A stage tool's --force (the one stage named) re-makes even an unchanged stage.
    changed.finish()
    assert StageDir(tmp_path, "make_cam", "h3", inputs={"train_cls": a.fingerprint}).begin(force=True) is False


# ------------------------------------------------------------------------------------------------------------
# 18.2: a run that wrote no artifact does not block the next one.

def test_folder_of_a_run_that_wrote_nothing_is_taken_over(tmp_path):
    first = StageDir(tmp_path, "make_cam", "wrong-root")
    assert first.begin() is False
    (first.path / "train.log").write_text("error: data root not found\n")
    release_lock(first.path)  # the failed process is gone
    second = StageDir(tmp_path, "make_cam", "right-root")
    assert second.begin() is False  # no --force needed
    assert read_manifest(second.path)["config_hash"] == "right-root"
    (second.path / "cams").mkdir()
    (second.path / "cams" / "x.npz").write_bytes(b"1")
    release_lock(second.path)
    with pytest.raises(StageMismatchError):  # now there is something to protect
        StageDir(tmp_path, "make_cam", "third").begin()


def test_train_cls_failing_at_start_does_not_block_the_corrected_run(tmp_path):
    from stages import train_cls

    data = tmp_path / "syn"
    generate_synthetic(data, num_train=4, num_val=0, seed=1, size=32)
    over = dict(work_dir=str(tmp_path / "w"), **{"data.root": str(data)})
    base = REPO / "tests" / "data" / "tiny_pipeline.py"
    bad = load_config(base, {**over, "cls_model.weights": str(tmp_path / "missing.pth"), "train_cls.iters": 2})
    with pytest.raises(WSSSError):
        train_cls.run(bad)
    good = load_config(base, {**over, "train_cls.iters": 2, "train_cls.ckpt_interval": 2})
    assert train_cls.run(good)["status"] == "complete"


# ------------------------------------------------------------------------------------------------------------
# 3 / 18.6: a live owner is named and never deleted; a dead owner's lock is stale.

HOLDER = r'''
import sys, time
from pathlib import Path
from wsss.artifacts import StageDir
sd = StageDir(Path(sys.argv[1]), "train_cls", "cfg")
sd.begin()
(sd.path / "last.pth").write_bytes(b"weights")
(Path(sys.argv[1]) / "ready").write_text("x")
time.sleep(120)
'''


def _holder(work: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(work)], env=subprocess_env())
    deadline = time.time() + 60
    while not (work / "ready").exists():
        assert proc.poll() is None and time.time() < deadline, "holder never took the lock"
        time.sleep(0.05)
    return proc


def test_second_job_is_refused_naming_the_live_owner_even_with_force(tmp_path):
    proc = _holder(tmp_path)
    try:
        for force in (False, "changed", True):
            with pytest.raises(StageLockedError, match=f"being run by pid {proc.pid} on "):
                StageDir(tmp_path, "train_cls", "other-cfg").begin(force=force)
        assert (tmp_path / "train_cls" / "last.pth").read_bytes() == b"weights"  # the live job's files are intact
        assert lock_owner(tmp_path / "train_cls")["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # SIGKILLed: its lock is stale now, and the same config resumes without any flag.
    assert lock_owner(tmp_path / "train_cls") is None
    sd = StageDir(tmp_path, "train_cls", "cfg")
    assert sd.begin() is False
    assert json.loads((sd.path / LOCK).read_text())["pid"] == os.getpid()
    sd.finish()
    assert not (sd.path / LOCK).exists()


def test_lock_of_another_host_is_refused_and_says_how_to_clear_it(tmp_path):
    d = tmp_path / "make_cam"
    d.mkdir()
    (d / LOCK).write_text(json.dumps({"host": "node-that-is-not-here", "pid": 1, "started": "t", "command": "c"}))
    with pytest.raises(StageLockedError, match=f"on node-that-is-not-here .*delete {d / LOCK}"):
        acquire_lock(d)


# ------------------------------------------------------------------------------------------------------------
# 5 / 18.3: changed data is detected by id; moved data and runtime knobs are not a different run.

def _pseudo_setup(data: Path, tmp_path: Path, **pseudo):
    work = tmp_path / "work"
    cfg = load_config(write_config(tmp_path / "cfg.py", data, work, num_workers=1, **pseudo))
    ds = build_dataset(cfg.data, "train")
    make_cam_workdir(data, work, ds.ids, ds.labels, ds.mask)
    return work, cfg, ds


def test_changed_labels_or_image_refuse_with_the_ids_moved_data_does_not(tiny_data, tmp_path):
    from stages import make_pseudo

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    work, cfg, ds = _pseudo_setup(data, tmp_path)
    first = make_pseudo.run(cfg)

    # The dataset moved to another place (another machine): same ids, same files -> still complete.
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    cfg_moved = load_config(write_config(tmp_path / "m.py", moved, work, num_workers=2))
    assert make_pseudo.run(cfg_moved)["finished"] == first["finished"]

    # An edited label of one image.
    labels_path = moved / "labels.json"
    labels = json.loads(labels_path.read_text())
    target = ds.ids[2]
    labels[target] = sorted(set(labels[target]) ^ {1})
    labels_path.write_text(json.dumps(labels))
    with pytest.raises(StageMismatchError, match=rf"data: 1 id\(s\) changed \({target}\)"):
        make_pseudo.run(load_config(write_config(tmp_path / "m2.py", moved, work, num_workers=1)))

    # A replaced image (another picture of the same size) in the untouched copy.
    img = next((data / "JPEGImages").glob(f"{ds.ids[5]}.*"))
    arr = np.array(Image.open(img))
    Image.fromarray(255 - arr).save(img)
    with pytest.raises(StageMismatchError, match=rf"1 id\(s\) changed \({ds.ids[5]}\)"):
        make_pseudo.run(cfg)


def test_identity_ignores_paths_split_names_and_runtime_keys(tiny_data, tmp_path):
    from stages import make_cam

    base = REPO / "tests" / "data" / "tiny_pipeline.py"
    ref = load_config(base, {"data.root": str(tiny_data)})
    variants = [{"data.root": "/elsewhere/data"}, {"data.cam_split": "train_copy"}, {"cam.num_workers": 3},
                {"cam.batch_size": 1}, {"cam.bg_threshold": 0.9}, {"cam.evaluate": False}]
    _, want = identity_config(ref, make_cam.CONFIG_KEYS, make_cam.SCHEMAS, with_data=True)
    for v in variants:
        _, got = identity_config(load_config(base, {"data.root": str(tiny_data), **v}), make_cam.CONFIG_KEYS,
                                 make_cam.SCHEMAS, with_data=True)
        assert got == want, v
    _, other = identity_config(load_config(base, {"cam.scales": [1.0]}), make_cam.CONFIG_KEYS, make_cam.SCHEMAS)
    assert other != want


# ------------------------------------------------------------------------------------------------------------
# 6: config values are checked before any work, one line each; refusals name the keys.

TINY = REPO / "tests" / "data" / "tiny_pipeline.py"


@pytest.mark.parametrize("override, needle", [
    ("cam.scales=abc", "config cam.scales='abc': must be a non-empty list of numbers"),
    ("cam.scales=0.5", "config cam.scales=0.5: must be a non-empty list of numbers"),
    ("cam.scales=[1.0,-1]", "each > 0"),
    ("cam.flip=maybe", "config cam.flip='maybe': must be true or false"),
    ("cam.batch_size=0", "config cam.batch_size=0: must be an integer >= 1"),
    ("cam.batch_size=-1", "config cam.batch_size=-1: must be an integer >= 1"),
    ("cam.bg_threshold=abc", "config cam.bg_threshold='abc': must be a number >= 0 and <= 1"),
    ("cam.scaels=[1.0]", "config cam.scaels: unknown key; did you mean 'scales'?"),
    ("trian_cls.iters=5", "unknown top-level section 'trian_cls'; did you mean 'train_cls'?"),
    ("train_seg.iters=1.5", "config train_seg.iters=1.5: must be an integer >= 1"),
    ("propagate.method=walk", "config propagate.method='walk': must be one of 'rw', 'par'"),
    ("pseudo.conf_fg=2", "config pseudo.conf_fg=2: must be a number >= 0 and <= 1"),
])
def test_bad_config_values_are_one_line_before_any_work(override, needle, tmp_path):
    from wsss.pipeline import parse_pipeline, validate_config

    cfg = load_config(TINY, parse_overrides([override]), work_dir=tmp_path)
    entries = parse_pipeline(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, [(entry.load(), entry.config(cfg)) for entry in entries])
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing was claimed or written


def test_stage_tool_refuses_bad_value_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "tools" / "make_cam.py"), str(TINY), "--work-dir", str(tmp_path),
                          "--cfg-options", "cam.flip=maybe"], env=subprocess_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == ("error: config cam.flip='maybe': must be true or false")
    assert "Traceback" not in out.stderr


def test_refusal_names_the_config_keys_that_differ(tiny_data, tmp_path):
    from stages import make_pseudo

    work, cfg, _ = _pseudo_setup(tiny_data, tmp_path, use_crf=False, conf_fg=None, conf_bg=None, bg_threshold=0.3)
    make_pseudo.run(cfg)
    cfg2 = load_config(write_config(tmp_path / "c2.py", tiny_data, work, num_workers=1, use_crf=False, conf_fg=None,
                                    conf_bg=None, bg_threshold=0.4))
    with pytest.raises(StageMismatchError, match=r"config pseudo.bg_threshold 0.3 -> 0.4"):
        make_pseudo.run(cfg2)


# ------------------------------------------------------------------------------------------------------------
# 7: pool workers die with their parent; SIGTERM stops the pool.

POOL = r'''
import os, sys, time
from pathlib import Path
from wsss.cli import stage_parser, user_errors
from wsss.engine.pool import map_images
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
import pool_task
out = Path(sys.argv[2])
args = stage_parser("x").parse_args([sys.argv[1]])
sys.exit(user_errors(lambda cfg: map_images(pool_task.slow, [str(out / f"{i}.pid") for i in range(8)], 2, "t"),
                     args))
'''

TASK = r'''
import os, time
def slow(path):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(30)
    return None
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _start_pool(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    (tmp_path / "pool_task.py").write_text(TASK)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"work_dir = {str(tmp_path / 'w')!r}\n")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", POOL, str(cfg), str(out)], env=subprocess_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while len(list(out.glob("*.pid"))) < 2:
        assert proc.poll() is None and time.time() < deadline, "pool never started"
        time.sleep(0.05)
    time.sleep(0.2)
    pids = sorted({int(p.read_text()) for p in out.glob("*.pid") if p.read_text()})
    assert len(pids) == 2 and proc.pid not in pids
    return proc, pids


def _wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_pool_workers_die_when_the_parent_is_killed(tmp_path):
    proc, pids = _start_pool(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = _wait_gone(pids)
    for p in left:  # never leave strays behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, "orphan pool workers outlived their killed parent"


def test_sigterm_stops_the_pool_without_a_traceback(tmp_path):
    proc, pids = _start_pool(tmp_path)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    err = proc.stderr.read()
    left = _wait_gone(pids, 5)
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert rc == 130 and time.time() - t0 < 15
    assert not left and "Traceback" not in err and "interrupted" in err


# ------------------------------------------------------------------------------------------------------------
# 9: one-line errors.

def test_full_disk_names_the_file(tmp_path, monkeypatch):
    import torch

    import wsss.artifacts as artifacts

    target = tmp_path / "last.pth"
    # torch's C++ writer on a full disk raises 'iostream error' / 'unexpected pos', not ENOSPC: with the
    # file system reporting no free space, that too is a one-line 'no space left' naming the file.
    monkeypatch.setattr(artifacts, "_free_bytes", lambda folder: 0)
    with pytest.raises(WSSSError, match=rf"{target}: cannot write: no space left on device"):
        with atomic_path(target):
            torch.save({"w": torch.zeros(1000)}, "/dev/full")
    monkeypatch.undo()
    with pytest.raises(RuntimeError):  # with free space, a writer's bug stays the writer's error
        with atomic_path(target):
            torch.save({"w": torch.zeros(1000)}, "/dev/full")
    with pytest.raises(WSSSError, match="no space left on device"):
        with atomic_path(target):
            with open("/dev/full", "wb") as fh:
                fh.write(b"x" * 100000)
                fh.flush()
    assert not target.exists() and not list(tmp_path.iterdir())


def test_read_only_work_dir_is_one_line(tmp_path, monkeypatch):
    import errno

    def refuse(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(WSSSError, match="cannot write: read-only file system"):
        with atomic_path(tmp_path / "sub" / "x.json") as tmp:
            tmp.write_text("{}")


def test_config_syntax_error_and_missing_base_name_file_and_line(tmp_path):
    (tmp_path / "broken_base.py").write_text("x = 1\ncam = dict(scales=[1.0,\n")
    (tmp_path / "child.py").write_text("_base_ = ['broken_base.py']\n")
    (tmp_path / "orphan.py").write_text("# a comment\n_base_ = ['nowhere/base.py']\n")
    with pytest.raises(ConfigError, match=r"broken_base.py:2: syntax error in config"):
        load_config(tmp_path / "child.py")
    with pytest.raises(ConfigError, match=r"orphan.py:2: _base_ file .*nowhere/base.py not found"):
        load_config(tmp_path / "orphan.py")


# ------------------------------------------------------------------------------------------------------------
# 8: own data without masks: stages that need ground truth say so in one line; the user still gets a trained
# segmentation network and its predictions.

def test_own_data_without_masks_gets_a_network_and_predictions(tiny_data, tmp_path):
    from wsss.pipeline import format_summary, run_pipeline

    syn = build_dataset(dict(type="synthetic", root=str(tiny_data)), "train")
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,labels\n" + "".join(
        f"{i},{';'.join(syn.class_names[c] for c in syn.labels[i])}\n" for i in syn.ids))
    work = tmp_path / "work"
    cfg_path = tmp_path / "own.py"
    cfg_path.write_text(textwrap.dedent(f"""
        _base_ = [{str(REPO / 'configs/_base_/default_runtime.py')!r}, {str(REPO / 'configs/_base_/pseudo.py')!r},
                  {str(REPO / 'configs/_base_/schedules/seg_synthetic.py')!r}]
        data = dict(type='folder', image_dir={str(tiny_data / 'JPEGImages')!r}, labels_csv={str(csv)!r},
                    classes={list(syn.class_names)!r}, mask_dir=None, train_split='train', val_split='val',
                    cam_split='train')
        work_dir = {str(work)!r}
        pseudo = dict(input='make_cam', num_workers=1)
        seg_model = dict(type='deeplabv3plus', backbone='resnet18', pretrained=False, weights=None, head_channels=16)
        train_seg = dict(iters=2, batch_size=2, crop_size=32, ckpt_interval=2, log_interval=1, num_workers=0)
        eval_seg = dict(scales=[1.0], flip=False)
        pipeline = ['make_pseudo',
                    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
                    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
                    'train_seg', 'eval_seg']
        """))
    cfg = load_config(cfg_path)
    ds = build_dataset(cfg.data, "train")
    assert not ds.has_masks
    make_cam_workdir(tiny_data, work, ds.ids, ds.labels, syn.mask)  # CAMs as an earlier stage would make them
    results = run_pipeline(cfg)
    status = {r.name: (r.status, r.quality) for r in results}
    assert status["train_seg_gt"][0] == "n/a" and "no ground-truth masks" in status["train_seg_gt"][1]
    assert status["eval_seg_gt"] == ("n/a", "needs 'train_seg_gt', which does not apply")
    assert status["train_seg"][0] == "ran" and status["eval_seg"][0] == "ran"
    assert (work / "train_seg" / "final.pth").is_file()
    preds = sorted((work / "eval_seg" / "preds").glob("*.png"))
    assert [p.stem for p in preds] == sorted(ds.ids)
    assert read_manifest(work / "eval_seg")["ground_truth"] is False
    assert not (work / "train_seg_gt").exists()
    assert "n/a" in format_summary(results)
