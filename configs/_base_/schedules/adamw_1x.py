# 12 epochs with the Swin detection optimiser (see ../recipes/adamw.py).
_base_ = ['mmdet::_base_/schedules/schedule_1x.py', '../recipes/adamw.py']
param_scheduler = {{_base_.param_scheduler_1x}}
optim_wrapper = {{_base_.adamw_optim_wrapper}}
auto_scale_lr = dict(enable=False, base_batch_size=16)
