# ViTAE-6M on ImageNet-1K at 224x224 (ViTAE §4.1: AdamW, lr 1e-3 at batch 1024, wd 0.05,
# cosine, 300 epochs, the DeiT/Swin augmentations).
_base_ = [
    '../_base_/models/vitae_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(backbone=dict(arch='6m'), head=dict(in_channels=256))
