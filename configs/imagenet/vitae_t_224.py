# ViTAE-T on ImageNet-1K at 224x224 (ViTAE §4.1): AdamW, lr 5e-4 at a total batch of 512
# (8 GPUs x 64), cosine, 300 epochs, T2T-ViT's augmentation (mmpretrain's T2T pipeline:
# RandomResizedCrop, flip, RandAugment m9/mstd0.5, RandomErasing 0.25, test crop 224/248 = 0.9;
# Mixup 0.8 / CutMix 1.0 and label smoothing 0.1 in the model).
# From the official code, not the paper: drop path 0.1, and a model EMA (timm ModelEma, decay
# 0.99996 per 512 images) that validation uses, as mmpretrain's T2T recipe does.
_base_ = [
    '../_base_/models/vitae_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_t2t_224.py',
    '../_base_/schedules/imagenet_bs512_adamw_vitae.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(backbone=dict(arch='t', drop_path_rate=0.1), head=dict(in_channels=256))
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
