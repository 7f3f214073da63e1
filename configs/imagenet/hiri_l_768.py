# HIRI-ViT-L fine-tuned at 768x768 from the 448 model (HIRI-ViT §5.1, Table 3).
_base_ = ['./hiri_s_768.py']
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.5),
    head=dict(in_channels=640, mid_channels=[5 * 640]))
load_from = 'work_dirs/hiri_l_448/epoch_300.pth'  # the 448 model to fine-tune
