# HIRI-ViT-L on ImageNet-1K at 448x448 (HIRI-ViT §5.1, Table 2).
_base_ = ['./hiri_s_448.py']
model = dict(
    # drop-path rate: not stated in the paper (S 0.1, B 0.3, L 0.5, as for Swin-T/S/B)
    backbone=dict(arch='l', drop_path_rate=0.5),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
