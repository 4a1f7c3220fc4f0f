# Segmentation network (stages/train_seg.py): DeepLabV3+ on a timm ResNet-101, output stride 16.
# The WSSS literature's usual choice for VOC / COCO results (also ResNet-50: seg_deeplabv3plus_r50.py).
seg_model = dict(
    type='deeplabv3plus',   # 'deeplabv3plus' | 'segformer_head' (all-MLP decoder over strides 4/8/16/32)
    backbone='resnet101',   # any timm CNN with features_only, or a timm ViT (via the ViT pyramid adapter)
    pretrained=True,        # True / a timm tag: timm's ImageNet weights (network at first use)
    weights=None,           # or a local .pth / 'efficientnet-lite0-package' loaded into the backbone
    output_stride=16,       # 16 (ASPP rates 6/12/18) or 8 (12/24/36); ignored for ViTs (patch size)
    aspp_rates=None,        # None: from output_stride
    head_channels=256,      # ASPP / decoder channels (MLP embedding for segformer_head)
    dropout=0.1,
    backbone_kwargs={},     # passed to timm.create_model (e.g. img_size for ViTs)
)
