# HIRI-ViT-B on ImageNet-1K at 384x384 (HIRI-ViT §5.1, Table 2): the recipe of hiri_s_384.py.
_base_ = ['./hiri_s_384.py']
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.3),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
