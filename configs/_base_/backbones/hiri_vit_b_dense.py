# HIRI-ViT-B for dense prediction: hiri_vit_s_dense.py with the B architecture, its channels and
# its weights.
_base_ = ['./hiri_vit_s_dense.py']
# ImageNet-1K HIRI-ViT-B weights (train them with configs/imagenet/hiri_b_448.py); placeholder path
pretrained = 'checkpoints/hiri_b_448_in1k.pth'
hiri_backbone = dict(arch='b', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained))
hiri_channels = [96, 192, 320, 640]
