"""Models: CAM classifiers (any timm backbone; ToCo ViT), the affinity net, segmentation nets, weight loading.

Importing the package registers every classifier type (``cam_classifier``, ``toco``, ``imagenet_mapped``) with
:data:`wsss.models.registry.CLASSIFIERS`, so ``build_classifier`` knows them all.
"""

from wsss.models import classifier, imagenet_head, toco  # noqa: F401  (registration side effects)
from wsss.models.registry import build_classifier  # noqa: F401
from wsss.models.seg import build_segmentor  # noqa: F401
