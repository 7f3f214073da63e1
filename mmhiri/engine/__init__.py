"""Training components for mmengine runners (imported on demand, never by ``import mmhiri``).

They subclass or register into mmpretrain, which ``import mmhiri`` must not import, so configs
load them with ``custom_imports=dict(imports=['mmhiri', 'mmhiri.engine'])``:

* :class:`EMADistillClassifier` (``type='mmhiri.EMADistillClassifier'``) - HIRI-ViT's EMA
  distillation (§4.5) for any GAP-neck, linear-head mmpretrain classifier;
* :class:`EMADistillHook` (``type='EMADistillHook'``) - its teacher update under DDP;
* :class:`CutMixWithMask`, :class:`MixupWithMask` (mmpretrain ``BATCH_AUGMENTS``) - CutMix and
  Mixup that report the pairing and the mask M.
"""
from .batch_augments import CutMixWithMask, MixInfo, MixupWithMask
from .ema_distill import EMADistillClassifier, EMADistillHook, ema_distill_target

__all__ = ['CutMixWithMask', 'MixupWithMask', 'MixInfo', 'EMADistillClassifier',
           'EMADistillHook', 'ema_distill_target']
