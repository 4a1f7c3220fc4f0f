# CLIP-ES (Lin et al., CVPR 2023) on PASCAL VOC 2012, then DeepLabV3+ ResNet-101 on its pseudo masks.
#   python tools/prepare_sbd.py --sbd data/benchmark_RELEASE/dataset --root data/VOCdevkit/VOC2012   (once)
#   python tools/run_pipeline.py configs/voc/clip_es_deeplab.py [--cfg-options clip_cam.pretrained=/path/ViT-B-16.pt]
#
# The chain (stage folders under work_dirs/voc_clip_es_deeplab/):
#   clip_cam_train, make_pseudo_train    CLIP-ES CAMs and CRF masks on train, every pixel kept: the figures CLIP-ES
#                                        reports (70.8 CAM, 75.0 after CRF; settings and caveats in clip_es.py)
#   clip_cam_train_aug, make_pseudo      the same on train_aug, pixels whose CRF probability is below 0.95 ignored
#                                        (CLIP-ES's labels for the segmentation network)
#   train_seg_gt, eval_seg_gt            DeepLabV3+ on the ground truth of train_aug: the fully supervised bound
#   train_seg, eval_seg                  DeepLabV3+ on the pseudo masks, scored on val
# Deviation: CLIP-ES trains DeepLab v2 (73.8 val); this chain trains DeepLabV3+ R101 (seg_deeplabv3plus_r101.py).
_base_ = ['./clip_es.py', '../_base_/models/seg_deeplabv3plus_r101.py', '../_base_/schedules/seg_20k.py']
work_dir = 'work_dirs/voc_clip_es_deeplab'
data = dict(cam_split='train_aug')
clip_cam = dict(name='clip_cam_train_aug', split='train_aug')
pseudo = dict(input='clip_cam_train_aug', split='train_aug', min_confidence=0.95)
train_seg = dict(masks='make_pseudo', split='train_aug')

pipeline = [
    dict(module='clip_cam', name='clip_cam_train', cfg=dict(clip_cam=dict(name='clip_cam_train', split='train'))),
    dict(module='make_pseudo', name='make_pseudo_train',
         cfg=dict(pseudo=dict(name='make_pseudo_train', input='clip_cam_train', split='train', min_confidence=None))),
    dict(module='clip_cam', name='clip_cam_train_aug'),
    'make_pseudo',
    dict(module='train_seg', name='train_seg_gt', cfg=dict(train_seg=dict(masks='gt', name='train_seg_gt'))),
    dict(module='eval_seg', name='eval_seg_gt', cfg=dict(eval_seg=dict(name='eval_seg_gt', input='train_seg_gt'))),
    'train_seg',
    'eval_seg',
]
