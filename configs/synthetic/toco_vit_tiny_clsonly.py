# Baseline for configs/synthetic/toco_vit_tiny.py: the same ViT, data, schedule and seed, trained with the
# final-layer classification loss only (no auxiliary classifier loss, no PTC, no CTC).
_base_ = ['./toco_vit_tiny.py']

cls_model = dict(cls_aux_weight=0.0, ptc_weight=0.0, ctc_weight=0.0)
