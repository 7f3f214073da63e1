# HIRI-ViT §5.1 fine-tuning at 768: 30 epochs, lr 1e-5, wd 1e-8, cosine.
_base_ = ['./imagenet_bs1024_adamw_hiri.py']
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-7, by_epoch=True, begin=0, end=30)]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
