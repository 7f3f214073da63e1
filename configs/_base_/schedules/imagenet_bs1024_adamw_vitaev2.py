# ViTAEv2 §4.1: the ViTAE schedule at a total batch of 1024 (8 GPUs x 128): lr 5e-4 per 512
# images = 1e-3.
_base_ = ['./imagenet_bs512_adamw_vitae.py']
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=1024)
