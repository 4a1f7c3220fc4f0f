# PASCAL VOC 2012 (+ SBD train_aug when SegmentationClassAug exists). Run tools/prepare_voc.py once.
data = dict(type='voc', root='data/VOCdevkit/VOC2012', train_split='train_aug', val_split='val', cam_split='train')
