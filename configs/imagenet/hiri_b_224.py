# HIRI-ViT-B on ImageNet-1K at 224x224 (HIRI-ViT §5.1, Table 2): the recipe of hiri_s_224.py.
_base_ = ['./hiri_s_224.py']
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.3),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
