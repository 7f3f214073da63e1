# HIRI-ViT-L on ImageNet-1K at 448x448 (HIRI-ViT §5.1, Table 2): the recipe of hiri_s_448.py.
_base_ = ['./hiri_s_448.py']
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.5),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
