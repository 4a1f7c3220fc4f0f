# The short CUDA + AMP run of benchmarks/gpu_proof.py: every training and inference stage on the synthetic set at
# 512 px with the VOC-sized networks (ResNet-50 OS16 classifier and affinity net, DeepLabV3+ ResNet-50), a handful
# of iterations each, the affinity ops forced to the CUDA kernels (a kernel that fails its self-check raises).
# Proves the stages run, resume and write the standard artifacts on a GPU; the numbers are not a quality result.
#   python benchmarks/gpu_proof.py                  # the whole proof (needs CUDA); --cpu-smoke: tiny, on CPU
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/synthetic.py',
    '../_base_/models/cam_classifier.py',
    '../_base_/schedules/cls_sgd_poly.py',
    '../_base_/affinity.py',
    '../_base_/pseudo.py',
    '../_base_/models/seg_deeplabv3plus_r50.py',
    '../_base_/schedules/seg_synthetic.py',
]
work_dir = 'work_dirs/gpu_proof'
device = 'cuda'
ops_backend = 'cuda'  # no fallback: the proof must run the kernels
data = dict(root='work_dirs/gpu_proof/data')  # tools/make_synthetic.py --size 512 (benchmarks/gpu_proof.py)

cls_model = dict(backbone='resnet50', pretrained=False, weights=None, output_stride=16)
train_cls = dict(iters=12, batch_size=8, lr=0.01, crop_size=512, scale_range=(0.7, 1.3), ckpt_interval=4,
                 val_interval=0, log_interval=2, num_workers=2, amp=True)
cam = dict(scales=[1.0, 0.5, 1.5], flip=True, batch_size=8, num_workers=2, amp=True, bg_threshold=0.5)

aff_model = dict(backbone='resnet50', pretrained=False, weights=None, feature_stride=4, max_stride=32)
train_aff = dict(conf_fg=0.7, conf_bg=0.4, crop_size=512, iters=8, batch_size=4, lr=0.01, ckpt_interval=4,
                 log_interval=2, num_workers=2, amp=True)
# t = 256 steps of the CUDA walk on the 128 x 128 stride-4 grid of each 512 px image
propagate = dict(method='rw', radius=5, beta=10, t=256, scales=[1.0], flip=True, bg='power', bg_power=1)
pseudo = dict(input='propagate', use_crf=False, conf_fg=None, conf_bg=None, bg_threshold=0.5)

seg_model = dict(pretrained=False, weights=None, head_channels=128)
train_seg = dict(iters=12, batch_size=8, crop_size=512, ckpt_interval=4, log_interval=2, num_workers=2, amp=True)
eval_seg = dict(scales=[1.0], flip=False, amp=True)

pipeline = [
    'train_cls',
    'make_cam',
    'train_aff',
    'propagate',
    # PAR at full resolution through the CUDA kernel (the propagate stage's training-free method)
    dict(module='propagate', name='propagate_par', cfg=dict(propagate=dict(method='par', name='propagate_par'))),
    'make_pseudo',
    'train_seg',
    'eval_seg',
]
