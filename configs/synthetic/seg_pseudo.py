# Synthetic data: DeepLabV3+ (EfficientNet-Lite0, offline ImageNet weights) trained on the pseudo masks of
# make_pseudo, evaluated single-scale and multi-scale + flip on val. Shares work_dir with the synthetic
# pipeline so it finds <work_dir>/make_pseudo/masks/.
#   python tools/train_seg.py configs/synthetic/seg_pseudo.py && python tools/eval_seg.py configs/synthetic/seg_pseudo.py
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/synthetic.py',
    '../_base_/models/seg_deeplabv3plus_lite0.py',
    '../_base_/schedules/seg_synthetic.py',
]
work_dir = 'work_dirs/synthetic'
seg_model = dict(head_channels=64)
