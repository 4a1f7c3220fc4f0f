"""CAMs from a frozen CLIP ViT, with no training: softmax Grad-CAM (CLIP-ES) or dense patch-text alignment.

Two ways to ask CLIP where a labelled class is:

* ``method='gradcam'`` (CLIP-ES, Lin et al. CVPR 2023): the image embedding (mean of the final patch tokens)
  is compared with the text embeddings of the image's labels *and* a set of background concepts; the softmax
  probability of one label is back-propagated to the output of ``ln_1`` of the last block, and Grad-CAM weights
  those activations by their mean gradient. The softmax is what suppresses co-occurring classes and background:
  raising 'train' also means lowering 'railway'.
* ``method='dense'`` (training-free patch-text alignment, in the spirit of CLIP Surgery / ClearCLIP / ExCEL):
  the last block(s) are re-run with *self-self* attention (value-value by default) and without the MLP, so each
  patch token keeps its own semantics instead of collecting the global ones; every patch embedding is compared
  with the text embeddings and the per-patch softmax over labels + background gives one map per label.

Either map can then be refined with CLIP-ES's class-aware attention affinity: the head-averaged attention of
the last blocks (patch-to-patch), Sinkhorn-normalised, symmetrised and squared, propagates each map but only
*from* patches inside the boxes around that map's thresholded regions.

Nothing here monkey-patches open_clip: the last blocks are recomputed from their own submodules (``ln_1``,
``attn.in_proj_weight/bias``, ``attn.out_proj``, ``ls_1``, ``ln_2``, ``mlp``, ``ls_2``), which
:func:`block_forward` shows is the same computation as ``block(x)``.

Shapes: B images, L = 1 + h*w tokens (CLS first), D vision width, E joint embedding width, K labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wsss.errors import WSSSError
from wsss.models.clip_loader import LoadedClip
from wsss.refine.clip_prompts import class_prompt_names

METHODS = ("gradcam", "dense")
DENSE_KINDS = ("qq", "kk", "vv")


# ----------------------------------------------------------------------------------------------- text side

@dataclass
class TextBank:
    """Unit-norm text embeddings of the foreground classes and the background prompts.

    fg: [C-1, E] float32 (row j is class j + 1); bg: [Nb, E] float32 (Nb may be 0); logit_scale: CLIP's
    learned temperature (exp of the parameter, 100 for OpenAI weights).
    """

    fg: torch.Tensor
    bg: torch.Tensor
    logit_scale: float
    prompts: list[list[str]] = field(default_factory=list)


@torch.no_grad()
def encode_prompts(clip: LoadedClip, texts_per_item: Sequence[Sequence[str]], templates: Sequence[str],
                   device: torch.device | str = "cpu", chunk: int = 256) -> torch.Tensor:
    """Embed each item as the mean of its unit-norm (template x text) sentence embeddings, renormalised.

    texts_per_item: N lists of names (synonyms); templates: strings with one '{}'. Returns [N, E] float32.
    """
    sentences, owner = [], []
    for i, texts in enumerate(texts_per_item):
        for t in texts:
            for tpl in templates:
                sentences.append(tpl.format(t))
                owner.append(i)
    if not sentences:
        return torch.zeros(0, int(clip.model.text_projection.shape[-1]), device=device)
    embs = []
    for s in range(0, len(sentences), chunk):
        tokens = clip.tokenizer(sentences[s:s + chunk]).to(device)
        embs.append(F.normalize(clip.model.encode_text(tokens).float(), dim=-1))
    emb = torch.cat(embs)
    owner_t = torch.tensor(owner, device=emb.device)
    out = torch.zeros(len(texts_per_item), emb.shape[1], device=emb.device).index_add_(0, owner_t, emb)
    return F.normalize(out, dim=-1)


def build_text_bank(clip: LoadedClip, class_names: Sequence[str], templates: Sequence[str],
                    background: Sequence[str], class_prompts: dict | None = None, use_synonyms: bool = True,
                    device: torch.device | str = "cpu") -> TextBank:
    """Text embeddings for every foreground class of ``class_names`` (background at 0) and each background
    prompt; computed once per run and reused for every image."""
    names = class_prompt_names(class_names, class_prompts, use_synonyms)
    fg = encode_prompts(clip, names, templates, device)
    bg = encode_prompts(clip, [[b] for b in background], templates, device)
    scale = float(clip.model.logit_scale.exp().item())
    return TextBank(fg=fg, bg=bg, logit_scale=scale, prompts=names)


def _text_sets(bank: TextBank, keys: Sequence[int], softmax_over: str) -> tuple[torch.Tensor, list[int]]:
    """Texts an image's softmax runs over and the row of each label in it.

    softmax_over='labels' (CLIP-ES): the image's labels then all background prompts; 'all': every class.
    Returns ([M, E], [K] positions).
    """
    idx = torch.as_tensor([k - 1 for k in keys], dtype=torch.long, device=bank.fg.device)
    if softmax_over == "labels":
        return torch.cat([bank.fg[idx], bank.bg]), list(range(len(keys)))
    return torch.cat([bank.fg, bank.bg]), [k - 1 for k in keys]


def _class_scores(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the valid texts of each row; where a row has a single valid text the softmax is constant,
    so its raw logit is used instead (plain CLIP similarity). logits, valid: [..., M]."""
    probs = logits.masked_fill(~valid, float("-inf")).softmax(dim=-1)
    single = valid.sum(dim=-1, keepdim=True) == 1
    return torch.where(single, logits, probs)


# ----------------------------------------------------------------------------------------------- vision side

def input_size_for(height: int, width: int, patch: int, scale: float = 1.0,
                   input_size: int | Sequence[int] | None = None) -> tuple[int, int]:
    """Network input size for one image: multiples of the patch size, aspect kept unless a fixed size is given.

    input_size None: the original size (CLIP-ES); an int: short side resized to it; (h, w): that size. The
    result is scaled by ``scale`` and rounded *up* to a multiple of ``patch`` (as CLIP-ES).
    """
    if input_size is None:
        bh, bw = float(height), float(width)
    elif isinstance(input_size, (int, float)):
        s = float(input_size) / min(height, width)
        bh, bw = height * s, width * s
    else:
        bh, bw = float(input_size[0]), float(input_size[1])
    h = max(patch, int(math.ceil(round(bh * scale, 6) / patch)) * patch)
    w = max(patch, int(math.ceil(round(bw * scale, 6) / patch)) * patch)
    return h, w


def preprocess(images: Sequence[np.ndarray], size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
               device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] RGB images -> normalised float32 [B, 3, h, w] (bicubic resize, as CLIP's transform)."""
    h, w = size
    batch = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_CUBIC) if im.shape[:2] != (h, w) else im
                      for im in images])
    x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def interpolate_pos_embed(pos: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resize learned positional embeddings [1 + gh*gw, D] to [1 + h*w, D] (bicubic over the patch grid; the
    CLS entry is kept). Identity when the grid is unchanged."""
    if tuple(grid) == tuple(new_grid):
        return pos
    cls, patches = pos[:1], pos[1:]
    d = patches.shape[-1]
    patches = patches.reshape(1, grid[0], grid[1], d).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=new_grid, mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], d).to(pos.dtype)
    return torch.cat([cls, patches])


def embed_tokens(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch embedding + CLS + (interpolated) positions + ln_pre: [B, 3, H, W] -> [B, 1 + h*w, D]."""
    x = visual.conv1(x)
    b, d, h, w = x.shape
    x = x.reshape(b, d, h * w).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, d).expand(b, 1, d)
    x = torch.cat([cls, x], dim=1)
    x = x + interpolate_pos_embed(visual.positional_embedding, visual.grid_size, (h, w)).to(x.dtype)
    return visual.ln_pre(x)


def _heads(block: nn.Module, x_ln: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v [B, nh, L, hd] from a block's in-projection applied to its ln_1 output [B, L, D]."""
    attn: nn.MultiheadAttention = block.attn
    q, k, v = F.linear(x_ln, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    b, n, d = q.shape
    nh = attn.num_heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n, nh, d // nh).transpose(1, 2)

    return split(q), split(k), split(v)


def _merge(o: torch.Tensor) -> torch.Tensor:
    """[B, nh, L, hd] -> [B, L, nh*hd]."""
    b, nh, n, hd = o.shape
    return o.transpose(1, 2).reshape(b, n, nh * hd)


def _softmax_sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention probabilities softmax(a b^T / sqrt(hd)): [B, nh, L, L]."""
    return (a @ b.transpose(-2, -1) * a.shape[-1] ** -0.5).softmax(dim=-1)


def attention_output(block: nn.Module, x_ln: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's attention branch on its ln_1 output: (out_proj(attn @ v) [B, L, D], head-mean attn [B, L, L])."""
    q, k, v = _heads(block, x_ln)
    a = _softmax_sim(q, k)
    return block.attn.out_proj(_merge(a @ v)), a.mean(dim=1)


def block_forward(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One ResidualAttentionBlock computed from its submodules: (output [B, L, D], head-mean attention [B, L, L]).

    Same result as ``block(x)`` for batch-first open_clip blocks (tests check the parity), plus the attention
    weights that ``block(x)`` does not return.
    """
    o, attn = attention_output(block, block.ln_1(x))
    x = x + block.ls_1(o)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, attn


def _run_block(visual: nn.Module, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if getattr(visual.transformer, "batch_first", True):
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def forward_blocks(visual: nn.Module, x: torch.Tensor, stop: int, attn_from: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Run blocks [0, stop) on tokens [B, L, D]; sum the head-mean attention of blocks i >= attn_from.

    Returns (tokens after block stop-1, attention sum [B, L, L] or None, number of blocks summed).
    """
    attn_sum, n = None, 0
    for i, blk in enumerate(visual.transformer.resblocks[:stop]):
        if i >= attn_from:
            x, a = block_forward(blk, x)
            attn_sum = a if attn_sum is None else attn_sum + a
            n += 1
        else:
            x = _run_block(visual, blk, x)
    return x, attn_sum, n


def _project(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """ln_post then the joint-space projection: [..., D] -> [..., E]."""
    x = visual.ln_post(tokens)
    return x @ visual.proj if visual.proj is not None else x


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-map (min, max) -> (0, 1) over the last dim, as pytorch-grad-cam's scale_cam_image: [K, N] -> [K, N]."""
    maps = maps - maps.amin(dim=-1, keepdim=True)
    return maps / (maps.amax(dim=-1, keepdim=True) + 1e-7)


# ----------------------------------------------------------------------------------------------- CAM methods

def softmax_gradcam(visual: nn.Module, x_in: torch.Tensor, keys: Sequence[Sequence[int]], bank: TextBank,
                    softmax_over: str = "labels", pool: str = "patch_mean") -> list[torch.Tensor]:
    """CLIP-ES Grad-CAM at the last block for every (image, label) pair in one backward pass.

    x_in: [B, L, D] tokens entering the last block (no grad needed). keys: per image the labelled classes
    (1..C-1). Each (image, label) pair gets its own copy of the last block's input, so one backward gives every
    pair its own gradient. Returns per image [K_b, h*w] float32 maps in [0, 1].
    """
    rows = [(b, j) for b, ks in enumerate(keys) for j in range(len(ks))]
    if not rows:
        return [x_in.new_zeros(0, x_in.shape[1] - 1) for _ in keys]
    block = visual.transformer.resblocks[-1]
    img_idx = torch.tensor([b for b, _ in rows], device=x_in.device)
    sets = [_text_sets(bank, ks, softmax_over) for ks in keys]
    m = max(t.shape[0] for t, _ in sets)
    e = bank.fg.shape[1]
    texts = x_in.new_zeros(len(keys), m, e, dtype=torch.float32)
    valid = torch.zeros(len(keys), m, dtype=torch.bool, device=x_in.device)
    for b, (t, _) in enumerate(sets):
        texts[b, :t.shape[0]] = t
        valid[b, :t.shape[0]] = True
    target = torch.tensor([sets[b][1][j] for b, j in rows], device=x_in.device)
    with torch.enable_grad():
        x = x_in.detach()[img_idx]
        acts = block.ln_1(x).detach().requires_grad_(True)
        o, _ = attention_output(block, acts)
        out = x + block.ls_1(o)
        out = out + block.ls_2(block.mlp(block.ln_2(out)))
        feats = _project(visual, out)
        img = feats[:, 1:].mean(dim=1) if pool == "patch_mean" else feats[:, 0]
        img = F.normalize(img.float(), dim=-1)
        logits = bank.logit_scale * torch.einsum("re,rme->rm", img, texts[img_idx])
        scores = _class_scores(logits, valid[img_idx])
        score = scores.gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(score, acts)
    a = acts.detach()[:, 1:].float()
    w = grad[:, 1:].float().mean(dim=1)
    cam = _minmax(torch.relu((a * w[:, None, :]).sum(dim=-1)))
    out_maps: list[torch.Tensor] = []
    start = 0
    for ks in keys:
        out_maps.append(cam[start:start + len(ks)])
        start += len(ks)
    return out_maps


def parse_dense_attn(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'vv', 'qq+kk', ['qq', 'kk', 'vv'] -> the self-self similarities averaged in the dense path."""
    kinds = tuple(spec.split("+")) if isinstance(spec, str) else tuple(spec)
    if not kinds or any(k not in DENSE_KINDS for k in kinds):
        raise WSSSError(f"clip_cam.dense_attn: '{spec}' is not a '+'-joined subset of {', '.join(DENSE_KINDS)}")
    return kinds


def dense_patch_embeddings(visual: nn.Module, x_start: torch.Tensor, first_block: int,
                           kinds: Sequence[str] = ("vv",), residual: bool = False, attn_from: int = 0
                           ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Patch embeddings that keep local semantics, from self-self attention in blocks [first_block, end).

    The original stream x runs the blocks unchanged; a second stream starts at x_start (``residual``) or at 0
    and adds, for every block, out_proj(A_ss v) with A_ss the mean of softmax(s s^T) over ``kinds`` (s in q, k,
    v computed from that block's ln_1(x)); the MLP is skipped on the second stream. Returns (unit-norm patch
    embeddings [B, h*w, E] float32, sum of the standard head-mean attention [B, L, L] of the blocks i >=
    attn_from (None if none), their count).
    """
    x = x_start
    y = x_start if residual else torch.zeros_like(x_start)
    attn_sum, n = None, 0
    blocks = visual.transformer.resblocks
    for i in range(first_block, len(blocks)):
        blk = blocks[i]
        q, k, v = _heads(blk, blk.ln_1(x))
        sel = {"qq": q, "kk": k, "vv": v}
        a_ss = sum(_softmax_sim(sel[kd], sel[kd]) for kd in kinds) / len(kinds)
        y = y + blk.ls_1(blk.attn.out_proj(_merge(a_ss @ v)))
        a = _softmax_sim(q, k)
        if i >= attn_from:
            attn_sum = a.mean(dim=1) if attn_sum is None else attn_sum + a.mean(dim=1)
            n += 1
        if i + 1 < len(blocks):
            x = x + blk.ls_1(blk.attn.out_proj(_merge(a @ v)))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    feats = F.normalize(_project(visual, y)[:, 1:].float(), dim=-1)
    return feats, attn_sum, n


def dense_maps(feats: torch.Tensor, keys: Sequence[Sequence[int]], bank: TextBank, softmax_over: str = "labels"
               ) -> list[torch.Tensor]:
    """Per-patch softmax over the image's texts, one map per label: feats [B, N, E] -> per image [K_b, N] in [0, 1]."""
    out = []
    for b, ks in enumerate(keys):
        if not ks:
            out.append(feats.new_zeros(0, feats.shape[1]))
            continue
        texts, pos = _text_sets(bank, ks, softmax_over)
        logits = bank.logit_scale * feats[b] @ texts.t()
        valid = torch.ones_like(logits, dtype=torch.bool)
        scores = _class_scores(logits, valid)
        out.append(_minmax(scores[:, pos].t().contiguous()))
    return out


# ----------------------------------------------------------------------------------------------- refinement

def affinity_from_attention(attn: torch.Tensor, sinkhorn_iters: int = 3, power: int = 2) -> torch.Tensor:
    """CLIP-ES transition matrix from patch-to-patch attention [N, N]: alternate column / row normalisation
    ``sinkhorn_iters`` times, symmetrise, raise to ``power`` by matrix products. Returns [N, N] float32."""
    t = attn.float()
    for _ in range(max(1, sinkhorn_iters)):
        t = t / t.sum(dim=0, keepdim=True).clamp_min(1e-12)
        t = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
    t = (t + t.t()) / 2
    out = t
    for _ in range(max(1, power) - 1):
        out = out @ t
    return out


def box_mask(cam: np.ndarray, threshold: float = 0.4) -> np.ndarray:
    """Union of the bounding boxes of the connected regions where ``cam`` > threshold * max(cam).

    cam: [h, w] float in [0, 1] (quantised to uint8 first, as CLIP-ES). Returns [h, w] bool; all False for a
    flat-zero map.
    """
    q = (np.clip(cam, 0, 1) * 255).astype(np.uint8)
    binary = (q > int(threshold * q.max())).astype(np.uint8)
    mask = np.zeros(cam.shape, dtype=bool)
    if q.max() == 0:
        return mask
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    for i in range(1, n):
        x, y, w, h = stats[i, :4]
        mask[y:y + h, x:x + w] = True
    return mask


def refine_with_attention(maps: torch.Tensor, attn: torch.Tensor, grid: tuple[int, int],
                          box_threshold: float = 0.4, sinkhorn_iters: int = 3, power: int = 2) -> torch.Tensor:
    """Class-aware attention affinity (CLIP-ES CAA) for one image.

    maps: [K, h*w] in [0, 1]; attn: [h*w, h*w] mean patch-to-patch attention. Each map is propagated by the
    transition matrix only from patches inside the boxes around its own high region, then min-max normalised.
    Returns [K, h*w] float32.
    """
    if maps.shape[0] == 0:
        return maps.float()
    trans = affinity_from_attention(attn, sinkhorn_iters, power)
    cams = maps.float()
    masks = np.stack([box_mask(c.reshape(grid).cpu().numpy(), box_threshold) for c in cams])
    m = torch.from_numpy(masks.reshape(len(cams), -1)).to(cams.device, cams.dtype)
    refined = (trans @ (cams * m).t()).t()
    return _minmax(refined)


# ----------------------------------------------------------------------------------------------- driver

@dataclass
class ClipCamSettings:
    """How CAMs are computed (the ``clip_cam`` config section minus model / text / data keys)."""

    method: str = "gradcam"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    input_size: int | tuple[int, int] | None = None
    softmax_over: str = "labels"
    pool: str = "patch_mean"
    refine: bool = True
    refine_layers: int = 8
    box_threshold: float = 0.4
    sinkhorn_iters: int = 3
    affinity_power: int = 2
    dense_attn: str = "vv"
    dense_blocks: int = 1
    dense_residual: bool = False
    amp: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise WSSSError(f"clip_cam.method: '{self.method}' is not one of {', '.join(METHODS)}")
        if self.softmax_over not in ("labels", "all"):
            raise WSSSError(f"clip_cam.softmax_over: '{self.softmax_over}' is not 'labels' or 'all'")
        if self.pool not in ("patch_mean", "cls"):
            raise WSSSError(f"clip_cam.pool: '{self.pool}' is not 'patch_mean' or 'cls'")
        if not self.scales or any(float(s) <= 0 for s in self.scales):
            raise WSSSError(f"clip_cam.scales: need positive scales, got {self.scales}")
        if self.dense_blocks < 1:
            raise WSSSError("clip_cam.dense_blocks must be >= 1")
        parse_dense_attn(self.dense_attn)
        self.scales = tuple(float(s) for s in self.scales)
        if isinstance(self.input_size, (list, tuple)):
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))


def maps_at_size(clip: LoadedClip, bank: TextBank, x: torch.Tensor, keys: Sequence[Sequence[int]],
                 settings: ClipCamSettings) -> list[torch.Tensor]:
    """CAMs on the patch grid for a batch of equally sized inputs x [B, 3, H, W] (already normalised).

    Returns per image [K_b, h, w] float32 in [0, 1] (refined when settings.refine).
    """
    visual = clip.visual
    n_blocks = len(visual.transformer.resblocks)
    h, w = x.shape[2] // clip.patch_size, x.shape[3] // clip.patch_size
    use_amp = settings.amp and x.device.type == "cuda"
    with torch.no_grad(), torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
        tokens = embed_tokens(visual, x)
        attn_from = n_blocks - max(1, settings.refine_layers) if settings.refine else n_blocks
        if settings.method == "gradcam":
            x_last, attn_sum, n_attn = forward_blocks(visual, tokens, n_blocks - 1, attn_from)
            if settings.refine:
                _, a_last = attention_output(visual.transformer.resblocks[-1],
                                             visual.transformer.resblocks[-1].ln_1(x_last))
                attn_sum = a_last if attn_sum is None else attn_sum + a_last
                n_attn += 1
        else:
            first = n_blocks - min(settings.dense_blocks, n_blocks)
            x_start, attn_sum, n_attn = forward_blocks(visual, tokens, first, attn_from)
            feats, a_dense, n_dense = dense_patch_embeddings(visual, x_start, first,
                                                              parse_dense_attn(settings.dense_attn),
                                                              settings.dense_residual, attn_from)
            if a_dense is not None:
                attn_sum = a_dense if attn_sum is None else attn_sum + a_dense
                n_attn += n_dense
    if settings.method == "gradcam":
        with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=use_amp):
            maps = softmax_gradcam(visual, x_last, keys, bank, settings.softmax_over, settings.pool)
    else:
        maps = dense_maps(feats, keys, bank, settings.softmax_over)
    out = []
    for b, m in enumerate(maps):
        m = m.float()
        if settings.refine and m.shape[0] > 0:
            attn = (attn_sum[b, 1:, 1:] / max(1, n_attn)).float()
            m = refine_with_attention(m, attn, (h, w), settings.box_threshold, settings.sinkhorn_iters,
                                      settings.affinity_power)
        out.append(m.reshape(-1, h, w))
    return out


def clip_cams(clip: LoadedClip, bank: TextBank, images: Sequence[np.ndarray], keys: Sequence[Sequence[int]],
              settings: ClipCamSettings, device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Multi-scale (and optionally flipped) CLIP CAMs for a batch of images at their original sizes.

    images: uint8 [H_b, W_b, 3] RGB; keys: per image its labelled classes (1..C-1, any order). Images that share
    a network input size are run as one batch. Each scale's maps are upsampled (bilinear) to the original size
    and averaged; the result is divided by its per-class max. Returns per image float32 [K_b, H_b, W_b] in [0, 1]
    with channel j for keys[b][j].
    """
    device = torch.device(device)
    keys = [list(int(k) for k in ks) for ks in keys]
    acc = [torch.zeros(len(ks), im.shape[0], im.shape[1], device=device) for im, ks in zip(images, keys)]
    views = [(s, False) for s in settings.scales] + ([(s, True) for s in settings.scales] if settings.flip else [])
    todo = [i for i, ks in enumerate(keys) if ks]
    for scale, flip in views:
        groups: dict[tuple[int, int], list[int]] = {}
        for i in todo:
            size = input_size_for(images[i].shape[0], images[i].shape[1], clip.patch_size, scale,
                                  settings.input_size)
            groups.setdefault(size, []).append(i)
        for size, idx in groups.items():
            batch = [images[i][:, ::-1] if flip else images[i] for i in idx]
            x = preprocess([np.ascontiguousarray(im) for im in batch], size, clip.mean, clip.std, device)
            maps = maps_at_size(clip, bank, x, [keys[i] for i in idx], settings)
            for i, m in zip(idx, maps):
                if flip:
                    m = m.flip(-1)
                up = F.interpolate(m[None], size=images[i].shape[:2], mode="bilinear", align_corners=False)[0]
                acc[i] += up.clamp_min(0)
    out = []
    for a in acc:
        if a.shape[0]:
            a = a / a.flatten(1).amax(dim=1).clamp_min(1e-7)[:, None, None]
        out.append(a.clamp(0, 1).cpu().numpy().astype(np.float32))
    return out
