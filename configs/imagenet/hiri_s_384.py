# HIRI-ViT-S on ImageNet-1K at 384x384 (HIRI-ViT §5.1, Table 2), with EMA distillation (§4.5,
# Table 7 row 11; see ../_base_/models/hiri_vit_cls.py).
_base_ = [
    '../_base_/models/hiri_vit_cls.py',
    '../_base_/datasets/imagenet_bs64_swin_384.py',
    '../_base_/schedules/imagenet_bs1024_adamw_hiri.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(
    # drop-path rate: not stated in the paper; ours grows with depth (S 0.1, B 0.3, L 0.5)
    backbone=dict(arch='s', drop_path_rate=0.1),
    head=dict(in_channels=512, mid_channels=[5 * 512]))
train_dataloader = dict(batch_size=128)  # x 8 GPUs = the paper's 1024
