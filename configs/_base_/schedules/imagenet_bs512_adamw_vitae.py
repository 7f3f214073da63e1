# ViTAE §4.1: AdamW, cosine schedule, 300 epochs, lr proportional to the total batch with 5e-4
# per 512 images (ViTAE trains at 512 = 8 GPUs x 64, so base_batch_size=512; ViTAEv2 at 1024,
# see imagenet_bs1024_adamw_vitaev2.py); T2T-ViT's data augmentation (the dataset base).
# Not stated in the paper, from the official (timm-based) training code: wd 0.05, 10 linear
# warm-up epochs, cosine down to 1e-5, no weight decay on biases and 1-D parameters. (The
# official code adds 10 cool-down epochs at 1e-5; the paper says 300 epochs, so do we.)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10)
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)
