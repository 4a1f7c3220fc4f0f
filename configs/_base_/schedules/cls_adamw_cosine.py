# Classifier training for ViT backbones: AdamW, cosine decay with warm-up.
train_cls = dict(
    iters=10000,
    batch_size=16,
    lr=6e-5,
    weight_decay=0.01,
    optimizer='adamw',
    schedule='cosine',
    warmup_iters=500,
    crop_size=448,
    scale_range=(0.5, 1.5),
    color_jitter=0.3,
    ckpt_interval=500,
    val_interval=2000,
    log_interval=50,
    num_workers=4,
    amp=True,
)
