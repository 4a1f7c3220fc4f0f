# Stage 1 on the synthetic set, CPU-sized: a ResNet-18 classifier from scratch, CAMs at 4 scales + flip.
#   python tools/make_synthetic.py --out data/synthetic --num-train 300 --num-val 100 --seed 0 --size 96
#   python tools/train_cls.py configs/synthetic/cam_resnet18.py
#   python tools/make_cam.py configs/synthetic/cam_resnet18.py
#   python tools/eval_cam.py configs/synthetic/cam_resnet18.py --stage make_cam
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/synthetic.py', '../_base_/models/cam_classifier.py',
          '../_base_/schedules/cls_sgd_poly.py']

cls_model = dict(backbone='resnet18', pretrained=False, weights=None, output_stride=16)
train_cls = dict(iters=300, batch_size=16, lr=0.05, crop_size=80, scale_range=(0.7, 1.3), ckpt_interval=100,
                 val_interval=0, log_interval=25, num_workers=1)
cam = dict(scales=[1.0, 0.5, 1.5, 2.0], batch_size=16, num_workers=1)
