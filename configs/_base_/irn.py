# IRN's published settings (Ahn et al., CVPR 2019, github.com/jiwoon-ahn/irn: run_sample.py, step/cam_to_ir_label.py,
# step/train_irn.py, step/make_sem_seg_labels.py) for the affinity half of the chain: seeds -> train_aff ->
# propagate -> pseudo masks, plus the crf stage with IRN's crf_inference_label. See docs/stage_affinity.md.
#
# Used by configs/voc/irn_r50.py and configs/coco/irn_r50.py. This file already inherits affinity.py, pseudo.py
# and crf.py: list it INSTEAD of them in a chain's _base_ (mmengine refuses a key defined by two bases), e.g.
#   _base_ = ['../_base_/default_runtime.py', '../_base_/datasets/voc12.py', ..., '../_base_/irn.py']
# The CAM stage each section reads (train_aff.input, propagate.input, pseudo.input) is named by the chain.
#
# What is IRN's and what is not:
#   * IRN's affinity comes from a class-boundary map and is trained with a displacement-field branch too; wsss
#     learns an AffinityNet-style embedding affinity (same loss on the same pair labels, no displacement branch).
#     So IRN's lr 0.1 for the edge layers is the lr of wsss's new layers here (lr 0.1, head_lr_mult 1).
#   * IRN's PolyOptimizer passes weight_decay positionally into SGD's momentum slot: its SGD runs with momentum
#     1e-4 (none, in effect) and the per-group weight decay 1e-4; its 'momentum' 0.9 is the poly power.
#   * batch_size is per GPU in wsss: 32 is IRN's total on one GPU; on N GPUs use 32 // N.
_base_ = ['./affinity.py', './pseudo.py', './crf.py']

# IRN's backbone: ImageNet ResNet-50 (torchvision's weights, timm tag 'tv_in1k'), frozen below; stride 4 = IRN's
# edge-map stride.
aff_model = dict(backbone='resnet50', pretrained='tv_in1k', feature_stride=4)

train_aff = dict(
    conf_fg=0.30,          # IRN conf_fg_thres
    conf_bg=0.05,          # IRN conf_bg_thres
    use_crf=True,          # cam_to_ir_label refines both decisions with crf_inference_label ...
    crf=dict(n_iter=10, gauss_sxy=3, gauss_compat=3, bilateral_sxy=50, bilateral_srgb=5, bilateral_compat=10,
             unary='labels', gt_prob=0.7),   # ... from the hard labels: unary_from_labels(gt_prob=0.7)
    radius=10,             # train_irn: PathIndex(radius=10); the walk uses propagate.radius 5
    crop_size=512,         # irn_crop_size
    scale_range=(0.5, 1.5),  # VOC12AffinityDataset(rescale=(0.5, 1.5)), random crop, horizontal flip
    iters=990,             # irn_num_epoches 3 on VOC train_aug: (10,582 // 32) * 3 (COCO sets its own); or set
                           # train_aff.epochs=3, which converts the same way for any set and overrides iters
    batch_size=32,         # irn_batch_size (per GPU in wsss, see above)
    freeze_backbone=True,  # resnet50_irn detaches every backbone stage and keeps the backbone in eval mode
    optimizer='sgd',
    lr=0.1,                # irn_learning_rate, the lr of the trained (new) layers
    head_lr_mult=1.0,
    momentum=1e-4,         # what IRN's SGD actually gets (see above)
    weight_decay=1e-4,     # irn_weight_decay
    lr_schedule='poly',
    power=0.9,
    warmup_iters=0,
)

propagate = dict(
    method='rw',
    radius=5,              # make_sem_seg_labels: propagate_to_edge(..., radius=5)
    beta=10,               # beta
    t=256,                 # exp_times 8: the transition matrix is squared 8 times = 2 ** 8 steps
    scales=[1.0],          # make_sem_seg_labels reads the image at scale 1.0 ...
    flip=True,             # ... and EdgeDisplacement averages the edge map with its flipped twin
    bg='none',             # foreground CAMs only walk ...
    normalise='global',    # ... and are divided by one maximum over all classes (rw_up / max(rw_up))
    eval_threshold=0.25,   # sem_seg_bg_thres
)

# IRN's semantic pseudo labels: argmax over (0.25, walked CAMs), no CRF, no ignore band.
pseudo = dict(
    conf_fg=None,
    conf_bg=None,
    bg_threshold=0.25,     # sem_seg_bg_thres
    use_crf=False,
)

# The crf stage (not in IRN's chain; for comparisons): IRN's crf_inference_label on the 0.30 decision.
crf = dict(
    bg_threshold=0.30,
    n_iter=10,
    gauss_sxy=3,
    gauss_compat=3,
    bilateral_sxy=50,
    bilateral_srgb=5,
    bilateral_compat=10,
    unary='labels',
    gt_prob=0.7,
)
