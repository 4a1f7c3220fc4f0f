# Zero-training baseline (issue 16): CAMs straight from the pretrained ImageNet head of EfficientNet-Lite0, read
# through the VOC mapping (wsss/models/voc_imagenet_map.csv): class k's CAM is the max over its mapped ImageNet
# rows of relu(W_r . f); 'person' has no counterpart and gets an all-zero CAM. No training step
# (train_cls.iters=0 only stores the model): the head of coco128_small.py before its training. Scored on the
# held-out photos at the same thresholds.
#   python tools/run_pipeline.py configs/real/coco128_imagenet_zero.py
_base_ = ['./coco128_small.py']
work_dir = 'work_dirs/coco128_imagenet_zero'

train_cls = dict(_delete_=True, iters=0, batch_size=8, crop_size=224, num_workers=0, ckpt_interval=50)
pipeline = ['train_cls', 'make_cam']
