# HIRI-ViT-L on ImageNet-1K at 224x224 (HIRI-ViT §5.1, Table 2): the recipe of hiri_s_224.py.
_base_ = ['./hiri_s_224.py']
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.5),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
