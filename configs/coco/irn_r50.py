# IRN (Ahn et al., CVPR 2019) on MS COCO 2014 with ResNet-50, then DeepLabV3+ ResNet-101 on the pseudo masks.
#   python tools/prepare_coco.py --instances annotations/instances_train2014.json --images train2014 \
#       --out data/coco2014_wsss --split train          (and the same with val2014 / --split val)
#   torchrun --nproc_per_node 8 tools/run_pipeline.py configs/coco/irn_r50.py
#
# The chain (stage folders under work_dirs/coco_irn_r50/): train_cls -> make_cam (train: seeds of the affinity, of
# the pseudo masks, and the seed mIoU) -> train_aff -> propagate -> make_pseudo (pseudo-mask mIoU on train) ->
# train_seg_gt / eval_seg_gt (the fully supervised bound) -> train_seg -> eval_seg (val, 40,137 images).
#
# IRN published VOC only; COCO runs of IRN in later papers keep its settings and scale the schedule by epochs, as
# here: classifier 5 epochs of 82,081 images at batch 16 (25,650 iterations), affinity 3 epochs at batch 32 (7,695
# iterations), everything else from voc/irn_r50.py and irn.py. The segmentation schedule (80k iterations of 16
# crops of 512) is our choice for 80 classes; no reference fixes it for this chain.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco14.py',
    '../_base_/models/cam_classifier.py',
    '../_base_/schedules/cls_sgd_poly.py',
    '../_base_/irn.py',
    '../_base_/models/seg_deeplabv3plus_r101.py',
    '../_base_/schedules/seg_20k.py',
]
work_dir = 'work_dirs/coco_irn_r50'
data = dict(train_split='train', val_split='val', cam_split='train')

cls_model = dict(backbone='resnet50', pretrained='tv_in1k', output_stride=16, freeze_bn=True, head_lr_mult=10.0)
train_cls = dict(iters=25650, batch_size=16, lr=0.1, weight_decay=1e-4, schedule='poly', crop_size=512,
                 scale_range=(0.5, 1.0), color_jitter=0.0, val_interval=5000)  # COCO photos: ~640 px long side
cam = dict(scales=[1.0, 0.5, 1.5, 2.0], flip=True, bg_threshold=0.15)

train_aff = dict(input='make_cam', iters=7695, head_lr_mult=1.0)
propagate = dict(input='make_cam')
pseudo = dict(input='propagate')   # the walk, background 0.25 (irn.py)
train_seg = dict(masks='make_pseudo', iters=80000)

pipeline = [
    'train_cls',
    'make_cam',
    'train_aff',
    'propagate',
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
