"""Every command in README.md and docs/*.md runs as written, as far as that is cheap:

* every tool and benchmark script a command names exists, and ``--help`` of every tool works;
* every option a command passes to a tool is one the tool declares (a renamed flag breaks the docs);
* every config a command names loads, with the command's ``--cfg-options`` applied;
* the data-preparation commands (prepare_voc, prepare_sbd) run literally, in a folder whose ``data/`` holds a tiny
  VOC + SBD layout (prepare_sbd gets ``--expect 0``: a tiny SBD cannot have 10,582 ids).

Commands with placeholders (CONFIG, <stage>, $C, WORK, ...) are checked for the tool and its flags only.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from wsss.config import load_config, parse_overrides

from conftest import REPO, subprocess_env

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
PLACEHOLDER = re.compile(r"CONFIG|<[a-z_]+>|\$[A-Z]|\bWORK\b|\bDATA\b|\bDIR\b|\.\.\.")


def _commands() -> list[tuple[str, str]]:
    """(doc file, command) for every python / torchrun command inside a fenced code block."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```[a-z]*\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            block = re.sub(r"\\\n\s*", " ", block)
            for line in block.splitlines():
                line = re.sub(r"\s#\s.*$", "", line).strip()
                if line.startswith("#"):
                    continue
                for part in line.split("&&"):
                    part = part.strip()
                    if re.match(r"^(\.venv/bin/)?python3? (tools|benchmarks)/|^torchrun ", part):
                        out.append((doc.name, part))
    return out


COMMANDS = _commands()


def _script_and_args(cmd: str) -> tuple[str, list[str], list[str]]:
    """The script path, the arguments with optional ``[...]`` parts dropped, and the flags inside them."""
    optional = re.findall(r"\[([^\]]*)\]", cmd)
    bare = re.sub(r"\[[^\]]*\]", " ", cmd)
    tokens = shlex.split(bare)
    script = next(t for t in tokens if t.endswith(".py") and t.split("/")[0] in ("tools", "benchmarks"))
    args = tokens[tokens.index(script) + 1:]
    flags = [t for o in optional for t in o.split() if t.startswith("--")]
    return script, args, flags


_HELP: dict[str, str] = {}


def _help(script: str, sub: str | None = None) -> str:
    """``--help`` of a tool, run in this process (imports are shared, so it is fast)."""
    key = f"{script} {sub or ''}"
    if key not in _HELP:
        argv = [str(REPO / script)] + ([sub] if sub else []) + ["--help"]
        buf = io.StringIO()
        old = sys.argv
        sys.argv = argv
        try:
            with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
                runpy.run_path(str(REPO / script), run_name="__main__")
        finally:
            sys.argv = old
        assert e.value.code in (0, None), f"{script} --help exited {e.value.code}"
        _HELP[key] = buf.getvalue()
    return _HELP[key]


def test_docs_have_commands() -> None:
    assert len(COMMANDS) > 30
    assert any("prepare_sbd.py" in c for _, c in COMMANDS)


@pytest.mark.parametrize("doc,cmd", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command(doc: str, cmd: str) -> None:
    script, args, optional_flags = _script_and_args(cmd)
    if "<stage>" in script:
        return
    assert (REPO / script).is_file(), f"{doc}: {script} does not exist"
    if script.startswith("benchmarks/"):
        return
    sub = args[0] if script.endswith("visualize.py") and args and not args[0].startswith("-") else None
    text = _help(script, sub)
    flags = [a.split("=")[0] for a in args if a.startswith("--")] + optional_flags
    for flag in flags:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{doc}: {script} has no option {flag}"
    if PLACEHOLDER.search(cmd):
        return
    configs = [a for a in args if a.startswith("configs/") and a.endswith(".py")]
    for config in configs:
        assert (REPO / config).is_file(), f"{doc}: {config} does not exist"
        opts: list[str] = []
        if "--cfg-options" in args:
            rest = args[args.index("--cfg-options") + 1:]
            opts = [o for o in rest if "=" in o and not o.startswith("--")]
        cfg = load_config(REPO / config, parse_overrides(opts))
        for pair in opts:
            key, value = pair.split("=", 1)
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert str(node) == value or node == parse_overrides([pair])[key], f"{doc}: {pair} not applied"
        for flag in ("--from", "--until"):  # run_pipeline: the stage must be in the config's pipeline
            if flag in args:
                from wsss.pipeline import parse_pipeline
                names = [e.name for e in parse_pipeline(cfg)]
                assert args[args.index(flag) + 1] in names, f"{doc}: {flag} names no stage of {config}"


def _tiny_data(cwd: Path) -> None:
    """data/VOCdevkit/VOC2012 (+ data/benchmark_RELEASE/dataset) as the docs' commands expect them."""
    from test_prepare_sbd import make_layout

    root, sbd, _ = make_layout(cwd / "tmp")
    (cwd / "data" / "VOCdevkit").mkdir(parents=True)
    root.rename(cwd / "data" / "VOCdevkit" / "VOC2012")
    sbd.parent.rename(cwd / "data" / "benchmark_RELEASE")
    (cwd / "tools").symlink_to(REPO / "tools")


PREPARE = [(d, c) for d, c in COMMANDS if re.search(r"tools/prepare_(voc|sbd)\.py", c) and not PLACEHOLDER.search(c)]


def test_prepare_commands_run_as_written(tmp_path: Path) -> None:
    assert PREPARE, "no prepare commands found in the docs"
    _tiny_data(tmp_path)
    # prepare_sbd first (it makes train_aug), then the prepare_voc lines, in the order the docs give them
    ordered = sorted(PREPARE, key=lambda dc: "prepare_sbd" not in dc[1])
    for doc, cmd in ordered:
        script, args, _ = _script_and_args(cmd)
        if "prepare_sbd" in script:
            args = args + ["--expect", "0"]
        out = subprocess.run([sys.executable, script, *args], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120, env=subprocess_env())
        assert out.returncode == 0, f"{doc}: {cmd}\n{out.stderr[-2000:]}"
    assert (tmp_path / "data/VOCdevkit/VOC2012/ImageSets/SegmentationAug/train_aug.txt").is_file()
    assert (tmp_path / "data/VOCdevkit/VOC2012/labels.json").is_file()
