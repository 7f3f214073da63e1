# ViTAEv2-48M on ImageNet-1K at 224x224 (the recipe of vitaev2_s_224.py). From the official
# training script: wd 0.055, drop path 0.25.
_base_ = ['./vitaev2_s_224.py']
model = dict(backbone=dict(arch='48m', drop_path_rate=0.25), head=dict(in_channels=768))
optim_wrapper = dict(optimizer=dict(weight_decay=0.055))
