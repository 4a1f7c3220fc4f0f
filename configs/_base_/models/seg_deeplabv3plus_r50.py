# Segmentation network: DeepLabV3+ on a timm ResNet-50 (see seg_deeplabv3plus_r101.py for the keys).
_base_ = ['./seg_deeplabv3plus_r101.py']
seg_model = dict(backbone='resnet50')
