# MS COCO 2014 converted to VOC layout by tools/prepare_coco.py (81 classes incl. background).
data = dict(type='coco', root='data/coco2014_wsss', train_split='train', val_split='val', cam_split='train')
