# 126 real COCO train2017 photos with VOC-class masks (../shared/data/coco128-voc, see its README.md), read
# through the custom folder reader: images + labels CSV; the masks are used only for evaluation.
# WSSS protocol: the classifier trains on these images' labels and CAMs are made for the same images, so
# every split is all.txt. 29 images have no VOC class: they train as all-negative and still count in the
# evaluation (their pixels are all background in the ground truth).
_root = '../shared/data/coco128-voc'
data = dict(
    type='folder',
    name='coco128-voc',
    image_dir=_root + '/JPEGImages',
    labels_csv=_root + '/labels.csv',
    mask_dir=_root + '/SegmentationClass',
    classes=['background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
             'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
             'tvmonitor'],
    split_files=dict(all=_root + '/all.txt'),
    train_split='all',
    val_split=None,        # no held-out images: the protocol scores CAMs/pseudo masks on the training images
    cam_split='all',
)
