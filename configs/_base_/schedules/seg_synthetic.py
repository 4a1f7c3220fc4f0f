# Segmentation schedule for the synthetic dataset (64-128 px images): short, small crops, CPU-friendly.
_base_ = ['./seg_20k.py']
train_seg = dict(iters=300, batch_size=8, lr=0.01, crop_size=96, scale_range=(0.75, 1.5), ckpt_interval=100,
                 log_interval=20, num_workers=0)
eval_seg = dict(scales=[0.75, 1.0, 1.25], flip=True)
