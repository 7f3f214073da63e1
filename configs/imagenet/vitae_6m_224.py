# ViTAE-6M on ImageNet-1K at 224x224 (the recipe of vitae_t_224.py).
_base_ = ['./vitae_t_224.py']
model = dict(backbone=dict(arch='6m'), head=dict(in_channels=256))
