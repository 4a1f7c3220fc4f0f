# Training and evaluation of the segmentation network (stages/train_seg.py, stages/eval_seg.py), VOC-sized:
# 20k iterations of 16 crops of 512 (DeepLabV3+ recipe: SGD, backbone lr 0.007, head 10x, poly 0.9).
train_seg = dict(
    name=None,             # stage folder (None: 'train_seg'); 'train_seg_gt' for the fully supervised bound
    masks='make_pseudo',   # stage whose masks/<id>.png are the labels, or 'gt' (ground truth: upper bound)
    split=None,            # None: data.train_split for 'gt', data.cam_split for pseudo masks
    iters=20000,
    batch_size=16,         # per GPU (>= 2: BatchNorm)
    lr=0.007,              # backbone; new layers get lr * head_lr_mult
    head_lr_mult=10.0,
    momentum=0.9,
    weight_decay=1e-4,
    lr_schedule='poly',    # 'poly' | 'cosine' | 'constant'
    power=0.9,
    warmup_iters=0,
    crop_size=512,
    scale_range=(0.5, 2.0),
    color_jitter=0.3,      # brightness / contrast / saturation (hue 0.05), p=0.8; 0 disables
    ckpt_interval=1000,    # last.pth every N iterations (and at the end)
    log_interval=50,
    num_workers=4,
    amp=True,              # float16 autocast + GradScaler on CUDA only
)

eval_seg = dict(
    name=None,             # stage folder (None: 'eval_seg'); 'eval_seg_gt' for the upper bound
    input='train_seg',     # training stage whose final.pth is evaluated
    split=None,            # None: data.val_split
    scales=[1.0],          # e.g. [0.5, 0.75, 1.0, 1.25, 1.5] for multi-scale
    flip=False,            # add horizontally flipped views
    mode='whole',          # 'whole' image or 'slide' (windows of crop_size every stride pixels)
    crop_size=512,
    stride=341,
    crf=False,             # dense CRF on the final probabilities (wsss.refine.crf)
    crf_params=dict(),     # wsss.refine.crf.CRFParams fields; empty: IRN's defaults
    save_predictions=True, # preds/<id>.png palette PNGs (also what makes a killed evaluation resumable)
    upper_bound='eval_seg_gt',  # eval stage of the fully supervised model: its mIoU divides ours
    amp=True,
)
