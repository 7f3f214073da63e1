# ViTAEv2-S on ImageNet-1K at 224x224 (ViTAEv2 §4.1): AdamW, lr 5e-4 per 512 images at a total
# batch of 1024 (8 GPUs x 128) = 1e-3, cosine, 300 epochs, T2T-ViT's augmentation (see
# vitae_t_224.py). From the official code, not the paper: wd 0.05, drop path 0.1, 10 warm-up
# epochs, and a model EMA (decay 0.99996 per 512 images: momentum 1 - 0.99996^2 = 8e-5 per step
# at 1024) that validation uses.
_base_ = [
    '../_base_/models/vitaev2_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_t2t_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vitaev2.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(backbone=dict(arch='s', drop_path_rate=0.1), head=dict(in_channels=512))
train_dataloader = dict(batch_size=128)  # x 8 GPUs = the paper's 1024
custom_hooks = [dict(type='EMAHook', momentum=8e-5, priority='ABOVE_NORMAL')]
