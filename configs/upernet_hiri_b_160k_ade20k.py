# UPerNet with HIRI-ViT-B, 160k iterations on ADE20K (HIRI-ViT §5.3, Table 6): mmseg's Swin
# UPerNet recipe at the paper's 2x resolution (crop 1024), stages 2-5 into the decode head.
_base_ = [
    './_base_/upernet_2x_160k_ade20k.py',
    './_base_/backbones/hiri_vit_b_dense.py',
]
model = dict(
    backbone={{_base_.hiri_backbone}},
    decode_head=dict(in_channels={{_base_.hiri_channels}}),
    auxiliary_head=dict(in_channels=320))
