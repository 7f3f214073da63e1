# ViTAE-13M on ImageNet-1K at 224x224 (the recipe of vitae_t_224.py).
_base_ = ['./vitae_t_224.py']
model = dict(backbone=dict(arch='13m'), head=dict(in_channels=320))
