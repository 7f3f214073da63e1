# ViTAEv2-48M on ImageNet-1K at 224x224 (the recipe of vitaev2_s_224.py).
_base_ = ['./vitaev2_s_224.py']
model = dict(backbone=dict(arch='48m'), head=dict(in_channels=768))
