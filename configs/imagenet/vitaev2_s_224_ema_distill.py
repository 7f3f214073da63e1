# ViTAEv2-S with HIRI-ViT's EMA distillation switched on: an example of the switch on a
# classifier that is not HIRI-ViT (any GAP neck + LinearClsHead/StackedLinearClsHead works), not
# a paper recipe. The EMA teacher takes the place of the recipe's EMAHook and is what
# validation evaluates (eval_teacher=True).
_base_ = ['./vitaev2_s_224.py']
custom_imports = dict(imports=['mmhiri', 'mmhiri.engine'], allow_failed_imports=False)
model = dict(
    type='mmhiri.EMADistillClassifier',
    distill=dict(alpha=0.5, momentum=8e-5, eval_teacher=True))
custom_hooks = [dict(type='EMADistillHook')]  # the teacher update under DDP
