# Small-data mode on real photos (issue 16): the classifier learns from the 96 tagged photos of
# coco128_splits/train.txt and is scored on the 30 photos of coco128_splits/heldout.txt that it never saw
# (classifier mAP, and every stage of the chain: CAMs of the held-out photos from the frozen classifier).
# Stage 1 is the small-data recipe: EfficientNet-Lite0 with its offline ImageNet weights, frozen (BN in eval mode);
# the CAM head is made of the pretrained ImageNet rows of each class's counterparts (wsss/models/voc_imagenet_map.csv,
# 'person' gets a fresh row), max-pooled per class, and only these rows train, on pooled features cached for 8
# augmented views per photo, with class-balanced BCE. Every choice below (head type, lr, loss, bg threshold) was
# made on a tune split of train.txt (benchmarks/tune_real.py), never on heldout.txt; see docs/real_photos.md.
# The classic protocol (CAMs on the training photos) is coco128_small_classic.py.
#   python tools/make_real_splits.py          # regenerates the committed lists (deterministic)
#   python tools/run_pipeline.py configs/real/coco128_small.py
#   python benchmarks/quality_real.py         # this, its classic twin, the zero-training and old configs
_base_ = ['./coco128_lite0.py']
work_dir = 'work_dirs/coco128_small'

_splits = 'configs/real/coco128_splits'
data = dict(
    split_files=dict(all='../shared/data/coco128-voc/all.txt', train=_splits + '/train.txt',
                     heldout=_splits + '/heldout.txt'),
    train_split='train',
    val_split='heldout',   # classifier mAP on photos it never saw
    cam_split='heldout',   # CAMs, refinements and pseudo masks of the held-out photos
)

cls_model = dict(_delete_=True, type='imagenet_mapped', backbone='tf_efficientnet_lite0', pretrained=False,
                 weights='efficientnet-lite0-package', output_stride=16, reduce='max', imagenet_map=None,
                 head_lr_mult=10.0)
train_cls = dict(iters=300, batch_size=16, lr=0.001, optimizer='sgd', weight_decay=1e-4, loss='balanced_bce',
                 pos_weight_max=10.0, cache_views=8, val_interval=0)
cam = dict(bg_threshold=0.25)
