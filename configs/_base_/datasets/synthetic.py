# The built-in synthetic dataset (tools/make_synthetic.py writes it, VOC layout).
data = dict(type='synthetic', root='data/synthetic', train_split='train', val_split='val', cam_split='train')
