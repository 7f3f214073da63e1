# ViTAE-S on ImageNet-1K at 224x224 (the recipe of vitae_t_224.py).
_base_ = ['./vitae_t_224.py']
model = dict(backbone=dict(arch='s'), head=dict(in_channels=384))
