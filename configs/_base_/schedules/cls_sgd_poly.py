# Classifier training as IRN: SGD, poly decay, 10x lr on the classifier (cls_model.head_lr_mult).
train_cls = dict(
    iters=5000,            # ~ 5 epochs of VOC train_aug at batch 16 (IRN trains 5 epochs)
    batch_size=16,         # per rank
    lr=0.1,                # backbone lr; the classifier gets head_lr_mult x this
    weight_decay=1e-4,
    momentum=0.9,
    optimizer='sgd',
    schedule='poly',       # 'poly' | 'cosine' | 'constant'
    power=0.9,
    warmup_iters=0,
    crop_size=512,
    scale_range=(0.5, 1.5),
    color_jitter=0.3,
    ckpt_interval=500,     # last.pth every N iterations (and at the end)
    val_interval=1000,     # val mAP every N iterations (0: only at the end)
    log_interval=50,
    num_workers=4,
    amp=True,              # CUDA only
)
