# HIRI-ViT-S fine-tuned at 768x768 from the 448 model (HIRI-ViT §5.1, Table 3), still with EMA
# distillation: the 448 checkpoint brings its EMA teacher along.
_base_ = [
    '../_base_/models/hiri_vit_cls.py',
    '../_base_/datasets/imagenet_bs64_swin_768.py',
    '../_base_/schedules/imagenet_bs1024_adamw_hiri_ft768.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(
    # drop-path rate: not stated in the paper; ours grows with depth (S 0.1, B 0.3, L 0.5)
    backbone=dict(arch='s', drop_path_rate=0.1),
    head=dict(in_channels=512, mid_channels=[5 * 512]))
train_dataloader = dict(batch_size=128)  # x 8 GPUs = 1024, the lr's base batch
load_from = 'work_dirs/hiri_s_448/epoch_300.pth'  # the 448 model to fine-tune
