# ViTAEv2-B on ImageNet-1K at 224x224 (the recipe of vitaev2_s_224.py). From the official
# training script: wd 0.065, drop path 0.4, dropout 0.1, gradient clipping at norm 5.
_base_ = ['./vitaev2_s_224.py']
model = dict(backbone=dict(arch='b', drop_path_rate=0.4, drop_rate=0.1),
             head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(weight_decay=0.065), clip_grad=dict(max_norm=5.0))
