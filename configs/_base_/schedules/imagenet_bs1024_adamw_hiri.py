# HIRI-ViT §5.1: AdamW, lr 1e-3 at a total batch of 1024 (8 GPUs x 128), wd 0.05, 300 epochs,
# cosine decay after 5 linear warm-up epochs. Not stated in the paper, as in the Swin recipe
# (the paper's [14]): no weight decay on norms, biases and other 1-D parameters, warm-up from
# lr / 1000, cosine down to 1e-5. `tools/train.py --auto-scale-lr` rescales lr linearly to the
# actual total batch (GPUs x train_dataloader.batch_size) from base_batch_size.
_base_ = ['mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py']
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
