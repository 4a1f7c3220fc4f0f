# IRN (Ahn et al., CVPR 2019) on PASCAL VOC 2012 with ResNet-50, then DeepLabV3+ ResNet-101 on the pseudo masks.
#   python tools/prepare_sbd.py --sbd data/benchmark_RELEASE/dataset --root data/VOCdevkit/VOC2012   (once)
#   torchrun --nproc_per_node 4 tools/run_pipeline.py configs/voc/irn_r50.py
#
# The chain (stage folders under work_dirs/voc_irn_r50/):
#   train_cls                        ResNet-50 CAM classifier on train_aug (10,582 images)
#   make_cam_train_aug               CAMs of train_aug: seeds of the affinity and of the segmentation labels
#   make_cam_train                   CAMs of train (1,464): the seed mIoU the papers report (IRN: 48.3)
#   train_aff                        affinity net from the confident parts of the train_aug CAMs
#   propagate_train, make_pseudo_train   random walk and pseudo masks on train: the pseudo-mask mIoU (IRN: 66.5)
#   propagate_train_aug, make_pseudo     the same on train_aug: the labels of the segmentation network
#   train_seg_gt, eval_seg_gt        DeepLabV3+ on the ground truth of train_aug: the fully supervised bound
#   train_seg, eval_seg              DeepLabV3+ on the pseudo masks, scored on val next to the bound
#
# Published settings: IRN's run_sample.py defaults (cam: 5 epochs of batch 16, lr 0.1 with 10x on the classifier,
# crop 512, CAM scales 1.0/0.5/1.5/2.0 + flip, cam_eval_thres 0.15; affinity, walk and pseudo masks: irn.py).
# Deviations: timm's ResNet-50 with its torchvision weights ('tv_in1k', the ones IRN loads); conv1/bn1 are not
# frozen (IRN freezes them), BatchNorm is (freeze_bn, IRN's FixedBatchNorm); the random rescale is relative
# (0.64-1.28 of the image, IRN: long side 320-640 of VOC's ~500 px images); the segmentation network is
# DeepLabV3+ R101 (IRN used DeepLab v2 R101), so val numbers compare with DeepLabV3+ rows of later papers.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/voc12.py',
    '../_base_/models/cam_classifier.py',
    '../_base_/schedules/cls_sgd_poly.py',
    '../_base_/irn.py',
    '../_base_/models/seg_deeplabv3plus_r101.py',
    '../_base_/schedules/seg_20k.py',
]
work_dir = 'work_dirs/voc_irn_r50'
data = dict(train_split='train_aug', val_split='val', cam_split='train_aug')

cls_model = dict(backbone='resnet50', pretrained='tv_in1k', output_stride=16, freeze_bn=True, head_lr_mult=10.0)
train_cls = dict(iters=3305,  # 10,582 // 16 * 5 epochs
                 batch_size=16, lr=0.1, weight_decay=1e-4, schedule='poly', crop_size=512, scale_range=(0.64, 1.28),
                 color_jitter=0.0)
cam = dict(scales=[1.0, 0.5, 1.5, 2.0], flip=True, bg_threshold=0.15)

# The affinity and both walks read the train_aug CAMs / the train CAMs by name (pseudo.input is required: the
# masks read the walk, with irn.py's background 0.25, never the seeds by default).
train_aff = dict(input='make_cam_train_aug', split='train_aug', head_lr_mult=1.0)  # IRN: heads at lr 0.1
propagate = dict(name='propagate_train_aug', input='make_cam_train_aug', split='train_aug')
pseudo = dict(input='propagate_train_aug', split='train_aug')
train_seg = dict(masks='make_pseudo', split='train_aug')
eval_seg = dict(input='train_seg', upper_bound='eval_seg_gt')

pipeline = [
    'train_cls',
    dict(module='make_cam', name='make_cam_train_aug',
         cfg=dict(cam=dict(name='make_cam_train_aug', split='train_aug'))),
    dict(module='make_cam', name='make_cam_train', cfg=dict(cam=dict(name='make_cam_train', split='train'))),
    'train_aff',
    dict(module='propagate', name='propagate_train',
         cfg=dict(propagate=dict(name='propagate_train', input='make_cam_train', split='train'))),
    dict(module='make_pseudo', name='make_pseudo_train',
         cfg=dict(pseudo=dict(name='make_pseudo_train', input='propagate_train', split='train'))),
    dict(module='propagate', name='propagate_train_aug'),
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
