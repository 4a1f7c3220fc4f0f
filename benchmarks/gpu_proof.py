"""GPU proof in one call: build the CUDA ops once, run the GPU tests, the affinity-op and CAM benchmarks, and a
short AMP run of every stage on the synthetic set at 512 px with kill-and-resume and artifact-format checks.

    python benchmarks/gpu_proof.py                    # on a CUDA machine (H100 / H200: ~5 min)
    python benchmarks/gpu_proof.py --cpu-smoke        # tiny sizes on CPU: proves the script runs end to end
    python benchmarks/gpu_proof.py --only bench_cam pipeline      # rerun some steps

On the lent H200 the image lacks mmengine, albumentations and their small dependencies: fetch their wheels here
once with ``bash benchmarks/gpu_proof_wheels.sh`` and see docs/benchmarks.md ("GPU proof") for the one device
command.

Steps (each a subprocess with its own log under <out>/logs/, a time limit, and a line in <out>/summary.md):

1. ``env``: torch / CUDA versions, the device, nvidia-smi.
2. ``build``: the wsss ops extension, once, into work_dirs/gpu_proof_ext (``TORCH_EXTENSIONS_DIR`` for every later
   step, so nothing rebuilds); on GPU it must be the CUDA variant.
3. ``pytest``: ``pytest tests/gpu tests/test_ops_selfcheck.py`` (junit XML kept).
4. ``bench_affinity``: PAR 512 x 512, K = 21 and K = 81, 10 iterations, six dilations; random walk 128 x 128,
   radius 5, C = 21, t = 256; the unfold / dense references in the same run; markdown + JSON with PASS/FAIL.
5. ``bench_cam``: make_cam's batched multi-scale CAMs (fp32 and fp16 autocast) against the per-image loop.
6. ``pipeline``: configs/synthetic/gpu_proof.py (ResNet-50 classifier / affinity net, DeepLabV3+ R50, AMP,
   ops forced to 'cuda'): train_cls, make_cam and train_aff each killed with SIGKILL mid-run and resumed,
   train_seg killed once its first checkpoint exists and resumed, propagate (random walk) and propagate_par (PAR)
   through the kernels, make_pseudo, eval_seg; then every artifact is checked against the formats of
   shared/DESIGN.md (see :func:`check_artifacts`).

Output: ``--out`` (default work_dirs/gpu_proof_out) holds summary.md (every step, its status and time, then every
table), bench_affinity.{md,json}, bench_cam.md, artifacts.md, env.md, pytest.xml, logs/ and stages/ (each stage's
manifest.json and metrics.json). ``--export`` (default ``$OUT`` when set) receives four files, refreshed after
every step so a run cut short still returns what it measured: summary.md, bench_affinity.json, pytest.xml and
details.tar.gz (the whole --out folder). Exit status 0 only when every step that ran passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = "configs/synthetic/gpu_proof.py"
STEPS = ("env", "build", "pytest", "bench_affinity", "bench_cam", "pipeline")
KILL_ITER_ENV, KILL_IMAGES_ENV = "WSSS_TEST_KILL_AT_ITER", "WSSS_TEST_KILL_AFTER_IMAGES"


@dataclass
class Sizes:
    """Everything that differs between the GPU proof and the CPU smoke run."""

    device: str
    ops_backend: str  # 'cuda' (forced: a failing kernel raises) or 'cpp'
    affinity_args: list[str]
    cam_args: list[str]
    image_size: int
    num_train: int
    num_val: int
    cfg_options: list[str]  # --cfg-options for every stage (also on resume: same config hash)
    step_timeout: int  # seconds per subprocess


GPU = Sizes(
    device="cuda", ops_backend="cuda",
    affinity_args=["--device", "cuda", "--size", "512", "--classes", "21", "81", "--iters", "10", "--rw-size", "128",
                   "--radius", "5", "--channels", "21", "--steps", "256", "--repeats", "5"],
    cam_args=["--device", "cuda", "--num-images", "64", "--batch-size", "8"],
    image_size=512, num_train=24, num_val=8, cfg_options=[], step_timeout=420,
)
CPU_SMOKE = Sizes(
    device="cpu", ops_backend="cpp",
    affinity_args=["--device", "cpu", "--size", "48", "--classes", "3", "5", "--iters", "3", "--rw-size", "16",
                   "--radius", "5", "--channels", "4", "--steps", "16", "--repeats", "1"],
    cam_args=["--device", "cpu", "--small", "--num-images", "4", "--batch-size", "2", "--scales", "1.0", "0.5"],
    image_size=64, num_train=8, num_val=4, step_timeout=300,
    cfg_options=["device=cpu", "ops_backend=cpp", "cls_model.backbone=resnet18", "aff_model.backbone=resnet18",
                 "seg_model.backbone=resnet18", "seg_model.head_channels=32", "train_cls.crop_size=64",
                 "train_cls.batch_size=4", "train_cls.num_workers=0", "train_cls.iters=8", "train_seg.iters=8", "cam.scales=[1.0,0.5]", "cam.batch_size=4",
                 "cam.num_workers=0", "train_aff.crop_size=64", "train_aff.batch_size=2", "train_aff.num_workers=0",
                 "propagate.t=16", "train_seg.crop_size=64", "train_seg.batch_size=4", "train_seg.num_workers=0"],
)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


class StepFailed(RuntimeError):
    """A step's command or check failed; the message is one line for summary.md."""


class Runner:
    """Runs the steps' subprocesses with a shared environment, logs each, and collects the summary rows."""

    def __init__(self, out: Path, sizes: Sizes, python: str, budget_s: float) -> None:
        self.out, self.sizes, self.python = out, sizes, python
        self.deadline = time.monotonic() + budget_s
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env["TORCH_EXTENSIONS_DIR"] = str(REPO / "work_dirs" / "gpu_proof_ext")
        self.env["WSSS_OPS"] = sizes.ops_backend
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.rows: list[tuple[str, str, float, str]] = []
        self._log_count = 0

    def timeout(self) -> float:
        """Seconds the next subprocess may take: the per-step limit, cut to what the total budget leaves."""
        left = self.deadline - time.monotonic()
        if left < 5:
            raise StepFailed("out of time (--budget-s)")
        return min(self.sizes.step_timeout, left)

    def cmd(self, name: str, args: list[str], env: dict[str, str] | None = None, expect_kill: bool = False,
            stdout_to: Path | None = None) -> subprocess.CompletedProcess:
        """Run ``python args...`` (or a list starting with a program) in the repo; log stdout + stderr."""
        self._log_count += 1
        log = self.out / "logs" / f"{self._log_count:02d}_{name}.log"
        full = args if args[0] != "python" else [self.python, *args[1:]]
        start, limit = time.perf_counter(), self.timeout()
        try:
            proc = subprocess.run(full, cwd=REPO, env={**self.env, **(env or {})}, capture_output=True, text=True,
                                  timeout=limit)
        except subprocess.TimeoutExpired as exc:
            log.write_text(f"$ {' '.join(full)}\nTIMEOUT after {limit:.0f} s\n{_text(exc.stdout)}{_text(exc.stderr)}")
            raise StepFailed(f"{name}: timed out after {limit:.0f} s (log {log.name})") from None
        seconds = time.perf_counter() - start
        log.write_text(f"$ {' '.join(full)}\n# exit {proc.returncode}, {seconds:.1f} s\n--- stdout ---\n"
                       f"{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        if stdout_to is not None:
            stdout_to.write_text(proc.stdout)
        if expect_kill:
            if proc.returncode != -signal.SIGKILL:
                raise StepFailed(f"{name}: expected a SIGKILL at the test hook, got exit {proc.returncode} "
                                 f"(log {log.name})")
        elif proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
            raise StepFailed(f"{name}: exit {proc.returncode}: {tail[:300]} (log {log.name})")
        return proc

    def step(self, name: str, fn: Callable[[], str]) -> bool:
        start = time.perf_counter()
        try:
            note = fn()
            status = "PASS"
        except StepFailed as exc:
            note, status = str(exc), "FAIL"
        except Exception as exc:  # a bug in a check must still leave a summary behind
            note, status = f"{type(exc).__name__}: {exc}", "FAIL"
        seconds = time.perf_counter() - start
        self.rows.append((name, status, seconds, note))
        print(f"[{status}] {name} ({seconds:.0f} s): {note}", flush=True)
        return status == "PASS"


# --- steps --------------------------------------------------------------------------------------------------

def step_env(r: Runner) -> str:
    proc = r.cmd("env", ["python", "-c", (
        "import torch, platform; print('python', platform.python_version()); print('torch', torch.__version__, "
        "'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); "
        "print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu only'); "
        "print('cpu threads', torch.get_num_threads())")])
    text = proc.stdout
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
        text += "\n" + smi.stdout
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = f"commit {git.stdout.strip() or 'unknown'}\ndate {stamp}\n" + text
    (r.out / "env.md").write_text("```\n" + text + "```\n")
    if r.sizes.device == "cuda" and "cpu only" in proc.stdout:
        raise StepFailed("no CUDA device visible to torch (use --cpu-smoke on a CPU machine)")
    return [line for line in proc.stdout.splitlines() if line.startswith("device")][0]


def step_build(r: Runner) -> str:
    proc = r.cmd("build", ["python", "-c", "import logging; logging.basicConfig(level=logging.INFO); "
                           "from wsss.ops import load_extension; print('variant', load_extension())"])
    variant = proc.stdout.split()[-1]
    want = "cuda" if r.sizes.device == "cuda" else "cpu"
    if variant != want:
        raise StepFailed(f"built the '{variant}' variant, expected '{want}'")
    return f"wsss_ops_{variant} built/loaded into {r.env['TORCH_EXTENSIONS_DIR']}"


def step_pytest(r: Runner) -> str:
    env = {"WSSS_OPS": ""}  # the tests choose their backends themselves
    proc = r.cmd("pytest", ["python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/gpu",
                            "tests/test_ops_selfcheck.py", f"--junitxml={r.out / 'pytest.xml'}"], env=env)
    last = proc.stdout.strip().splitlines()[-1]
    if r.sizes.device == "cuda" and "skipped" in last:
        raise StepFailed(f"GPU tests skipped on a GPU machine: {last}")
    return last.strip("= ")


def step_bench_affinity(r: Runner) -> str:
    md = r.out / "bench_affinity.md"
    r.cmd("bench_affinity", ["python", "benchmarks/bench_affinity.py", *r.sizes.affinity_args,
                             "--json", str(r.out / "bench_affinity.json")], stdout_to=md)
    result = json.loads((r.out / "bench_affinity.json").read_text())
    if r.sizes.device != "cuda":
        return f"{len(result['rows'])} rows (CPU: no targets)"
    failed = [f"{t['op']} {t['size']}: {k}" for t in result["targets"] for k, v in t.items()
              if isinstance(v, bool) and not v]
    return "all targets PASS" if not failed else "targets missed: " + "; ".join(failed)


def step_bench_cam(r: Runner) -> str:
    md = r.out / "bench_cam.md"
    proc = r.cmd("bench_cam", ["python", "benchmarks/bench_cam.py", *r.sizes.cam_args], stdout_to=md)
    ratio = [line for line in proc.stdout.splitlines() if line.startswith("ratio")][-1]
    value = float(ratio.split(":")[1].strip().rstrip("x"))
    target = " (target >= 3x: " + ("PASS)" if value >= 3 else "FAIL)") if r.sizes.device == "cuda" else ""
    return ratio + target


def _stage(r: Runner, tool: str, *extra: str, env: dict[str, str] | None = None, expect_kill: bool = False,
           name: str | None = None) -> subprocess.CompletedProcess:
    opts = ["--cfg-options", *r.sizes.cfg_options] if r.sizes.cfg_options else []
    return r.cmd(name or tool, ["python", f"tools/{tool}.py", CONFIG, "--work-dir", str(work_dir(r)), *extra, *opts],
                 env=env, expect_kill=expect_kill)


def work_dir(r: Runner) -> Path:
    return REPO / "work_dirs" / ("gpu_proof" if r.sizes.device == "cuda" else "gpu_proof_smoke")


def _kill_and_resume(r: Runner, tool: str, stage: str, env: dict[str, str], marker: str) -> str:
    """Run ``tool`` until the test hook SIGKILLs it, check it left a resumable state, resume, check completion."""
    sd = work_dir(r) / stage
    _stage(r, tool, env=env, expect_kill=True, name=f"{stage}_killed")
    manifest = json.loads((sd / "manifest.json").read_text())
    if manifest.get("status") != "running" or (sd / "final.pth").exists():
        raise StepFailed(f"{stage}: after the kill the manifest says {manifest.get('status')!r}"
                         f"{' and final.pth exists' if (sd / 'final.pth').exists() else ''}")
    resumed = _stage(r, tool, "--resume", name=f"{stage}_resumed")
    if marker not in resumed.stderr + resumed.stdout:
        raise StepFailed(f"{stage}: resumed run does not log {marker!r}")
    if json.loads((sd / "manifest.json").read_text()).get("status") != "complete":
        raise StepFailed(f"{stage}: not complete after --resume")
    return f"{stage} killed ({', '.join(f'{k}={v}' for k, v in env.items())}) and resumed"


def _kill_train_seg_and_resume(r: Runner) -> str:
    """train_seg has no kill hook: SIGKILL it once last.pth exists, then --resume (skipped if it finished first)."""
    sd = work_dir(r) / "train_seg"
    opts = ["--cfg-options", *r.sizes.cfg_options] if r.sizes.cfg_options else []
    cmd = [r.python, "tools/train_seg.py", CONFIG, "--work-dir", str(work_dir(r)), *opts]
    log = r.out / "logs" / "train_seg_killed.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=r.env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + r.timeout()
        while proc.poll() is None and not (sd / "last.pth").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    if not killed:
        if proc.returncode != 0:
            raise StepFailed(f"train_seg: exit {proc.returncode} (log {log.name})")
        return "train_seg finished before its first checkpoint could be killed (resume not exercised)"
    if (sd / "final.pth").exists():
        return "train_seg killed too late (final.pth written; resume not exercised)"
    resumed = _stage(r, "train_seg", "--resume", name="train_seg_resumed")
    if "resumed from" not in resumed.stderr + resumed.stdout:
        raise StepFailed("train_seg: resumed run does not log 'resumed from'")
    return "train_seg killed after its first checkpoint and resumed"


def step_pipeline(r: Runner) -> str:
    wd = work_dir(r)
    if wd.exists():
        shutil.rmtree(wd)  # a fresh run every time: the resume checks need it
    s = r.sizes
    data_root = wd / "data"
    r.cmd("make_synthetic", ["python", "tools/make_synthetic.py", "--out", str(data_root), "--num-train",
                             str(s.num_train), "--num-val", str(s.num_val), "--seed", "0", "--size", str(s.image_size)])
    r.sizes = s = replace(s, cfg_options=[*s.cfg_options, f"data.root={data_root}"])
    notes = [_kill_and_resume(r, "train_cls", "train_cls", {KILL_ITER_ENV: "7"}, "resumed from"),
             _kill_and_resume(r, "make_cam", "make_cam", {KILL_IMAGES_ENV: str(s.num_train // 2)},
                              "make_cam: resuming"),
             _kill_and_resume(r, "train_aff", "train_aff", {KILL_ITER_ENV: "6"}, "resumed from")]
    _stage(r, "run_pipeline", "--until", "make_pseudo", name="pipeline_to_make_pseudo")
    notes.append(_kill_train_seg_and_resume(r))
    final = _stage(r, "run_pipeline", name="pipeline_rest")
    (r.out / "pipeline_summary.md").write_text(final.stdout)
    stages_out = r.out / "stages"
    for manifest in sorted(wd.glob("*/manifest.json")):
        dst = stages_out / manifest.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("manifest.json", "metrics.json"):
            if (manifest.parent / name).is_file():
                shutil.copy2(manifest.parent / name, dst / name)
    report = check_artifacts(wd, data_root, s.image_size, kernel_logs=r.out / "logs",
                             expect_kernel_check=s.device == "cuda")
    (r.out / "artifacts.md").write_text(report)
    return "; ".join(notes) + "; artifacts OK"


# --- artifact formats ---------------------------------------------------------------------------------------

def check_artifacts(wd: Path, data_root: Path, size: int, kernel_logs: Path, expect_kernel_check: bool) -> str:
    """Every stage complete and every artifact in the format shared/DESIGN.md fixes; returns a markdown report.

    CAMs (make_cam, propagate, propagate_par): one ``cams/<id>.npz`` per train image with exactly ``keys`` int16
    (the image's labelled classes) and ``cams`` float16 [len(keys), H, W] at the image size, in [0, 1], finite.
    Pseudo masks: one palette PNG per image, image-sized, values in {0, labelled classes, 255}. Weights: final.pth
    loadable on CPU. eval_seg: metrics.json with an mIoU. On GPU also: each kernel's self-check passed on cuda.
    """
    import numpy as np
    import torch
    from PIL import Image

    from wsss.data.voc import load_voc

    ds = load_voc(data_root, "train", name="synthetic")
    lines = ["| stage | status | items | checked |", "|---|---|---:|---|"]
    problems: list[str] = []
    stages = ("train_cls", "make_cam", "train_aff", "propagate", "propagate_par", "make_pseudo", "train_seg",
              "eval_seg")
    for stage in stages:
        sd = wd / stage
        manifest = json.loads((sd / "manifest.json").read_text()) if (sd / "manifest.json").is_file() else {}
        status = manifest.get("status", "missing")
        if status != "complete":
            problems.append(f"{stage}: status {status}")
        checked = ""
        if stage in ("train_cls", "train_aff", "train_seg"):
            state = torch.load(sd / "final.pth", map_location="cpu", weights_only=False)
            tensors = state if stage == "train_cls" else state.get("model", {})
            n = sum(1 for v in tensors.values() if torch.is_tensor(v))
            if n == 0:
                problems.append(f"{stage}: final.pth holds no tensors")
            checked = f"final.pth: {n} tensors"
        elif stage in ("make_cam", "propagate", "propagate_par"):
            files = sorted((sd / "cams").glob("*.npz"))
            if [f.stem for f in files] != sorted(ds.ids):
                problems.append(f"{stage}: {len(files)} CAM files for {len(ds.ids)} images")
            for f in files:
                with np.load(f) as z:
                    names, keys, cams = sorted(z.files), z["keys"], z["cams"]
                h, w = ds.image(f.stem).shape[:2]
                ok = (names == ["cams", "keys"] and keys.dtype == np.int16 and cams.dtype == np.float16
                      and cams.shape == (len(keys), h, w) and sorted(keys.tolist()) == sorted(ds.labels[f.stem])
                      and np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1)
                if not ok:
                    problems.append(f"{stage}/cams/{f.name}: keys {names} {keys.dtype} {cams.dtype} {cams.shape}")
                    break
            checked = f"{len(files)} cams/*.npz: keys int16 = labels, cams float16 [K, {size}, {size}] in [0, 1]"
        elif stage == "make_pseudo":
            files = sorted((sd / "masks").glob("*.png"))
            if [f.stem for f in files] != sorted(ds.ids):
                problems.append(f"{stage}: {len(files)} masks for {len(ds.ids)} images")
            for f in files:
                with Image.open(f) as im:
                    mode, arr = im.mode, np.array(im)
                allowed = {0, 255, *ds.labels[f.stem]}
                values = set(np.unique(arr).tolist())
                if mode != "P" or arr.shape != ds.image(f.stem).shape[:2] or not values <= allowed:
                    problems.append(f"{stage}/masks/{f.name}: mode {mode}, shape {arr.shape}, values "
                                    f"{np.unique(arr).tolist()[:8]}")
                    break
            checked = f"{len(files)} masks/*.png: palette, image-sized, values in {{0, labels, 255}}"
        elif stage == "eval_seg":
            metrics = json.loads((sd / "metrics.json").read_text())
            miou = metrics.get("miou")
            if not isinstance(miou, float):
                problems.append(f"{stage}: metrics.json has no float miou")
            checked = f"metrics.json: mIoU {miou:.3f} (a few iterations from scratch: not a quality number)" \
                if isinstance(miou, float) else "metrics.json"
        lines.append(f"| {stage} | {status} | {manifest.get('items', '')} | {checked} |")
    if expect_kernel_check:  # the propagate stages ran both kernels (WSSS_OPS=cuda: a failed check would raise)
        text = "".join(p.read_text() for p in sorted(kernel_logs.glob("*pipeline*.log")))
        for op in ("par", "random_walk"):
            passed = re.search(rf"wsss\.ops\.{op}: kernel self-check on cuda:\d+ passed", text) is not None
            if not passed:
                problems.append(f"no passed self-check of the {op} CUDA kernel in the pipeline logs")
            lines.append(f"| kernel {op} | {'self-check passed' if passed else 'NOT SEEN'} | | propagate logs |")
    report = "\n".join(lines) + "\n"
    if problems:
        report += "\nproblems:\n" + "\n".join(f"- {p}" for p in problems) + "\n"
        (kernel_logs.parent / "artifacts.md").write_text(report)
        raise StepFailed("artifact check: " + "; ".join(problems[:5]))
    return report


# --- main ---------------------------------------------------------------------------------------------------

def write_summary(r: Runner, wall: float) -> Path:
    parts = [f"# GPU proof ({'CPU smoke run' if r.sizes.device == 'cpu' else 'CUDA'})", "",
             f"command: `python benchmarks/gpu_proof.py {' '.join(sys.argv[1:])}`; total {wall:.0f} s", "",
             "| step | status | seconds | note |", "|---|---|---:|---|"]
    parts += [f"| {n} | {s} | {t:.0f} | {note} |" for n, s, t, note in r.rows]
    for title, name in (("environment", "env.md"), ("affinity ops", "bench_affinity.md"),
                        ("make_cam speed", "bench_cam.md"), ("pipeline", "pipeline_summary.md"),
                        ("artifacts", "artifacts.md")):
        if (r.out / name).is_file():
            parts += ["", f"## {title}", "", (r.out / name).read_text().rstrip()]
    path = r.out / "summary.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def export(out: Path, dest: Path) -> None:
    """Copy the few files a device run may bring back (its $OUT takes at most 8) into ``dest``."""
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("summary.md", "bench_affinity.json", "pytest.xml"):
        if (out / name).is_file():
            shutil.copy2(out / name, dest / name)
    tmp = dest / "details.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(out, arcname="gpu_proof_out")
    tmp.replace(dest / "details.tar.gz")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (C++ twin), to prove the script runs")
    p.add_argument("--out", default=str(REPO / "work_dirs" / "gpu_proof_out"), help="output folder")
    p.add_argument("--export", default=os.environ.get("OUT"), help="copy summary.md, bench_affinity.json, "
                   "pytest.xml and details.tar.gz here after every step (default: $OUT when set)")
    p.add_argument("--only", nargs="+", choices=STEPS, default=None, help="run only these steps (env always runs)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    p.add_argument("--budget-s", type=float, default=540.0, help="total time; later steps are cut short so the "
                   "summary is written inside a 10-minute device call (default 540)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)  # one run's results, never a mix
    out.mkdir(parents=True)
    sizes = CPU_SMOKE if args.cpu_smoke else GPU
    r = Runner(out, sizes, args.python, args.budget_s)
    wanted = set(args.only or STEPS) | {"env"}
    start = time.perf_counter()
    steps = {"env": step_env, "build": step_build, "pytest": step_pytest, "bench_affinity": step_bench_affinity,
             "bench_cam": step_bench_cam, "pipeline": step_pipeline}
    ok = True
    for name in STEPS:
        if name in wanted:
            passed = r.step(name, lambda fn=steps[name]: fn(r))
            ok &= passed
            summary = write_summary(r, time.perf_counter() - start)
            if args.export:
                export(out, Path(args.export))
            if name in ("env", "build") and not passed:
                break  # nothing else can run
    print(f"summary: {summary}" + (f" (exported to {args.export})" if args.export else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
