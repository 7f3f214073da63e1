# ViTAEv2-B on ImageNet-1K at 224x224 (the recipe of vitaev2_s_224.py).
_base_ = ['./vitaev2_s_224.py']
model = dict(backbone=dict(arch='b'), head=dict(in_channels=1024))
