# HIRI-ViT §5.1 fine-tuning at 768 (Table 3): AdamW (beta1 = "momentum" 0.9), lr 1e-5,
# wd 1e-8, 30 epochs of cosine decay, no warm-up stated. The paper gives no batch size for it;
# lr is kept at the 1024 total batch of the main recipe (auto_scale_lr rescales it).
_base_ = ['./imagenet_bs1024_adamw_hiri.py']
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=1e-8))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-7, by_epoch=True, begin=0, end=30)]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
