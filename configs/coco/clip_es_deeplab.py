# CLIP-ES (Lin et al., CVPR 2023) on MS COCO 2014, then DeepLabV3+ ResNet-101 on its pseudo masks.
#   python tools/prepare_coco.py ... --out data/coco2014_wsss --split train   (and val; docs/datasets.md)
#   python tools/run_pipeline.py configs/coco/clip_es_deeplab.py [--cfg-options clip_cam.pretrained=/path/ViT-B-16.pt]
#
# The chain (stage folders under work_dirs/coco_clip_es_deeplab/): clip_cam (train) -> make_pseudo (CRF, pixels
# whose CRF probability is below 0.95 ignored, as CLIP-ES labels its segmentation training set; its metrics.json
# scores them against the train masks with ignored pixels excluded and counted wrong) -> train_seg_gt / eval_seg_gt
# (fully supervised bound) -> train_seg -> eval_seg (val). Deviation: CLIP-ES trains DeepLab v2; this chain trains
# DeepLabV3+ R101, 80k iterations of 16 crops of 512 (our choice for 80 classes).
_base_ = ['./clip_es.py', '../_base_/models/seg_deeplabv3plus_r101.py', '../_base_/schedules/seg_20k.py']
work_dir = 'work_dirs/coco_clip_es_deeplab'
pseudo = dict(min_confidence=0.95)
train_seg = dict(masks='make_pseudo', iters=80000)

pipeline = [
    'clip_cam',
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
