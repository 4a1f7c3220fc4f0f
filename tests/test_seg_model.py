"""The segmentation networks: DeepLabV3+ and the SegFormer-style head on CNN and ViT backbones (no weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import timm
import torch

from wsss.errors import WSSSError
from wsss.models.seg import ViTPyramid, build_segmentor
from wsss.models.seg_heads import ASPP, default_aspp_rates


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions run far faster single-threaded on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _logits(model: torch.nn.Module, h: int, w: int, b: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(b, 3, h, w))


def test_deeplabv3plus_resnet18_gives_logits_at_input_size() -> None:
    torch.manual_seed(0)
    model = build_segmentor(dict(type="deeplabv3plus", backbone="resnet18", pretrained=False), num_classes=5)
    # stride-4 map (low-level) ... deepest map at output stride 16 (layer4 dilated, not downsampled)
    assert model.backbone.reductions == [4, 8, 16, 16]
    assert model.head.low_proj[0].in_channels == 64 and model.head.low_proj[0].out_channels == 48
    assert [b[0].dilation[0] for b in model.head.aspp.branches[1:4]] == [6, 12, 18]
    out = _logits(model, 50, 70)  # sides not multiples of any stride
    assert out.shape == (2, 5, 50, 70) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_output_stride_8_doubles_the_aspp_rates() -> None:
    model = build_segmentor(dict(backbone="resnet18", output_stride=8, head_channels=32), num_classes=3)
    assert model.backbone.reductions == [4, 8, 8, 8]
    assert [b[0].dilation[0] for b in model.head.aspp.branches[1:4]] == list(default_aspp_rates(8)) == [12, 24, 36]
    assert _logits(model, 33, 40).shape == (2, 3, 33, 40)


def test_aspp_keeps_the_spatial_size_and_pools_the_image() -> None:
    aspp = ASPP(16, 8, rates=(1, 2, 3)).eval()
    x = torch.randn(2, 16, 7, 9)
    y = aspp(x)
    assert y.shape == (2, 8, 7, 9)
    # the image-pool branch is constant over the map
    pooled = aspp.branches[-1](x)
    assert torch.allclose(pooled, pooled[:, :, :1, :1].expand_as(pooled))


def test_vit_pyramid_reshapes_tokens_to_strides_4_8_16_32() -> None:
    torch.manual_seed(0)
    pyr = ViTPyramid("vit_tiny_patch16_224", pretrained=False, img_size=64).eval()
    assert pyr.depths == [2, 5, 8, 11] and pyr.reductions == [4, 8, 16, 32]
    with torch.no_grad():
        feats = pyr(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 192, 16, 24), (1, 192, 8, 12), (1, 192, 4, 6), (1, 192, 2, 3)]
    # blocks after the deepest tap, the final norm and the classifier head are pruned (no unused weights)
    assert len(pyr.vit.blocks) == 12 and isinstance(pyr.vit.norm, torch.nn.Identity)


def test_segformer_head_on_vit_tiny_handles_any_input_size() -> None:
    torch.manual_seed(0)
    cfg = dict(type="segformer_head", backbone="vit_tiny_patch16_224", pretrained=False,
               backbone_kwargs=dict(img_size=64), head_channels=64, vit_depths=[1, 3, 5, 7])
    model = build_segmentor(cfg, num_classes=4)
    assert model.size_divisor == 16 and len(model.backbone.vit.blocks) == 8
    assert _logits(model, 64, 64).shape == (2, 4, 64, 64)
    assert _logits(model, 50, 70).shape == (2, 4, 50, 70)  # padded to 64 x 80 inside, cropped back


def test_segformer_head_on_a_cnn_uses_one_map_per_stride() -> None:
    model = build_segmentor(dict(type="segformer_head", backbone="resnet18", head_channels=32), num_classes=3)
    assert model.head.levels == [0, 1, 3]  # strides 4, 8 and the deeper of the two stride-16 maps
    assert _logits(model, 40, 40).shape == (2, 3, 40, 40)


def test_parameter_groups_split_pretrained_backbone_from_new_layers() -> None:
    model = build_segmentor(dict(type="segformer_head", backbone="vit_tiny_patch16_224",
                                 backbone_kwargs=dict(img_size=32), head_channels=16), num_classes=3)
    bb, head = model.backbone_parameters(), model.head_parameters()
    assert {id(p) for p in bb}.isdisjoint({id(p) for p in head})
    assert len(bb) + len(head) == len(list(model.parameters()))
    # the ViT adapter's resize layers are new, so they train at the head learning rate
    assert {id(p) for p in model.backbone.resize.parameters()} <= {id(p) for p in head}


def test_backbone_weights_load_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = timm.create_model("resnet18", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = build_segmentor(dict(backbone="resnet18", weights=str(tmp_path / "r18.pth"), head_channels=16), 3)
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, reference.conv1.weight)
    assert torch.equal(body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_unknown_model_type_is_a_one_line_error() -> None:
    with pytest.raises(WSSSError, match="unknown seg_model.type 'pspnet'"):
        build_segmentor(dict(type="pspnet", backbone="resnet18"), 3)
