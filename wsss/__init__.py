"""wsss: weakly supervised semantic segmentation, from image-level labels to pixel masks.

The library holds pure functions and small classes (tensors in, tensors out); the file system and the
command line live in ``stages/`` and ``tools/``.
"""

__version__ = "0.1.0"
