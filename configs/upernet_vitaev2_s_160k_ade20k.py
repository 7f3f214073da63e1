# UPerNet with ViTAEv2-S, 160k iterations on ADE20K (ViTAEv2 §4.5.3, Table 12): mmseg's Swin-T
# UPerNet recipe unchanged - AdamW lr 6e-5, wd 0.01, batch 16 = 8x2, 1500 linear warm-up
# iterations then polynomial (power 1) decay, crop 512x512, flip, photometric distortion,
# rescale 0.5-2.0 - with ViTAEv2-S in place of Swin-T.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
    './_base_/backbones/vitaev2_s_dense.py',
]
model = dict(
    backbone={{_base_.vitaev2_backbone}},
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
# as mmseg's Swin config: no weight decay on norms (norm_decay_mult also covers the BatchNorms
# of the convolution branches, which the 'norm' key does not match)
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
