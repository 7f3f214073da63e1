# HIRI-ViT-S fine-tuned at 768x768 from the 448 model (HIRI-ViT §5.1, Table 3).
_base_ = [
    '../_base_/models/hiri_vit_cls.py',
    '../_base_/datasets/imagenet_bs64_swin_768.py',
    '../_base_/schedules/imagenet_bs1024_adamw_hiri_ft768.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(
    # drop-path rate: not stated in the paper (S 0.1, B 0.3, L 0.5, as for Swin-T/S/B)
    backbone=dict(arch='s', drop_path_rate=0.1),
    head=dict(in_channels=512, mid_channels=[5 * 512]))
load_from = 'work_dirs/hiri_s_448/epoch_300.pth'  # the 448 model to fine-tune
