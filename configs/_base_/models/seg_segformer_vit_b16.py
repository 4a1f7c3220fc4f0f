# Segmentation network: ViT-B/16 (tokens of blocks 3/6/9/12 -> strides 4/8/16/32) with a SegFormer-style MLP head.
_base_ = ['./seg_deeplabv3plus_r101.py']
seg_model = dict(
    type='segformer_head',
    backbone='vit_base_patch16_224.augreg_in21k_ft_in1k',
    vit_depths=None,                      # None: 4 evenly spaced blocks, the last included
    head_channels=256,
    backbone_kwargs=dict(img_size=512),   # position embeddings resized once to the training crop
)
