"""EMA distillation (HIRI-ViT §4.5) for mmpretrain classifiers with a GAP neck and a linear head.

The student is trained on CutMix/Mixup samples (x̃, ȳ) whose target blends the mixed label with
what an exponential moving average (EMA) of the student itself - the teacher - sees in the two
original images (HIRI-ViT Eqs. 4-5, in the paper's notation):

    x̃ = M ⊙ x_a + (1 - M) ⊙ x_b                    ỹ = λ y_a + (1 - λ) y_b,  λ = ΣM / HW
    P̃ = M ⊙ P_a + (1 - M) ⊙ P_b                    ŷ = AvgPool(P̃)
    ȳ = α ỹ + (1 - α) ŷ

P_a, P_b are the teacher's class-probability maps of x_a and x_b with the global average pooling
removed: the head's layers are applied at every location of the last feature map, then a softmax.
M is resized to the map grid by area averaging (exact when the grid divides the image, e.g.
HIRI-ViT at 384 or 448; for Mixup M is the constant λ). No external teacher network is involved.

Switch it on in any mmpretrain classifier config::

    custom_imports = dict(imports=['mmhiri', 'mmhiri.engine'], allow_failed_imports=False)
    model = dict(type='mmhiri.EMADistillClassifier',
                 distill=dict(alpha=0.5, momentum=1e-4, eval_teacher=False))
    custom_hooks = [dict(type='EMADistillHook')]  # needed under DDP; harmless otherwise

The classifier's ``train_cfg.augments`` (or ``data_preprocessor.batch_augments``) are taken
over by the classifier, which mixes after the teacher has seen the clean batch; stock
``'Mixup'``/``'CutMix'`` entries become :class:`MixupWithMask`/:class:`CutMixWithMask` with the
same arguments. ``distill=None`` makes the class behave exactly as ``ImageClassifier``.

Choices the paper leaves open (documented here, not claimed to be the authors'):

* **Momentum convention** - mmengine's (``ExponentialMovingAverage``, ``EMAHook``):
  ``teacher = (1 - momentum) * teacher + momentum * student`` after every optimizer step, so a
  small momentum (1e-4) is a slow teacher; timm's "decay" is ``1 - momentum``.
* **Buffers** (BN running statistics, counters) are copied from the student at each update, as
  mmengine's EMA does by default; only parameters are averaged.
* **Label smoothing** configured in the head's loss (e.g. ``LabelSmoothLoss``) is applied to ȳ,
  i.e. to both the mixed label and the teacher's part.
* **Evaluation** uses the student unless ``eval_teacher=True`` (``predict``, hence validation
  and testing, then run the teacher).

The teacher is a deep copy of backbone, neck and head held as ``self.teacher`` whose parameters
are turned into buffers: it is in the model's ``state_dict`` (checkpoints save and resume it)
and moves with ``.to()``, but it has no parameters, so optimizers, DDP and parameter counts
never see it and no gradient can reach it. It always stays in eval mode (no drop path, BN uses
running statistics) and runs under ``torch.no_grad()``. Loading a checkpoint without teacher
weights (a plain ``ImageClassifier`` one) starts the teacher from the loaded student.

This module imports mmpretrain; ``import mmhiri`` never imports it.
"""
import copy
import warnings
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmpretrain.models import ImageClassifier
from mmpretrain.models.heads import LinearClsHead, StackedLinearClsHead
from mmpretrain.models.necks import GlobalAveragePooling
from mmpretrain.models.utils import RandomBatchAugment
from mmpretrain.structures import DataSample

from ..registry import register_model
from .batch_augments import CutMixWithMask, MixInfo, MixupWithMask, no_mix

# stock augments and their mask-recording twins (same arguments, same random draws)
MASKED_TWINS = {'Mixup': 'MixupWithMask', 'CutMix': 'CutMixWithMask'}


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """M of shape ``(1 or N, 1, H, W)`` averaged onto an ``h x w`` grid (area interpolation)."""
    return F.adaptive_avg_pool2d(mask, tuple(size))


def ema_distill_target(mixed_scores: torch.Tensor, prob_maps: torch.Tensor, info: MixInfo,
                       alpha: float) -> torch.Tensor:
    """ȳ = α ỹ + (1 - α) ŷ with ŷ = AvgPool(M ⊙ P_a + (1 - M) ⊙ P_b) (HIRI-ViT Eq. 5).

    Args:
        mixed_scores (Tensor): ỹ, the CutMix/Mixup labels, ``(N, K)``.
        prob_maps (Tensor): the teacher's per-location probabilities of the *original* images,
            ``(N, K, h, w)``; ``prob_maps[i]`` is P_a of sample i, ``prob_maps[info.index[i]]``
            its P_b.
        info (MixInfo): the pairing and M at image resolution.
        alpha (float): weight α of ỹ.

    Returns:
        Tensor: ȳ, ``(N, K)``.
    """
    prob_maps = prob_maps.float()
    m = resize_mask(info.mask.to(prob_maps), prob_maps.shape[-2:])
    mixed_maps = m * prob_maps + (1 - m) * prob_maps[info.index]
    teacher_scores = mixed_maps.mean(dim=(2, 3))
    return alpha * mixed_scores.float() + (1 - alpha) * teacher_scores


def _params_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a (persistent) buffer of the same name."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach())
    return module


@register_model()
class EMADistillClassifier(ImageClassifier):
    """``ImageClassifier`` trained with HIRI-ViT's EMA distillation (see the module docstring).

    Args:
        backbone, neck, head, pretrained, train_cfg, data_preprocessor, init_cfg: as for
            :class:`mmpretrain.models.ImageClassifier`. With distillation on, ``neck`` must be
            ``GlobalAveragePooling`` and ``head`` a ``LinearClsHead`` or
            ``StackedLinearClsHead`` (the per-location teacher maps need them), and the head's
            loss must accept soft targets (``LabelSmoothLoss``, or ``CrossEntropyLoss`` with
            ``use_soft=True``), as Mixup/CutMix require anyway.
        distill (dict, optional): ``alpha`` (weight α of the CutMix/Mixup label; default 0.5),
            ``momentum`` (EMA momentum, mmengine convention; default 1e-4) and ``eval_teacher``
            (evaluate with the teacher; default False). None: a plain ``ImageClassifier``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 distill: Optional[dict] = None):
        if distill is None:
            super().__init__(backbone, neck, head, pretrained, train_cfg, data_preprocessor,
                             init_cfg)
            self.teacher = None
            return
        distill = dict(distill)
        self.alpha = float(distill.pop('alpha', 0.5))
        self.momentum = float(distill.pop('momentum', 1e-4))
        self.eval_teacher = bool(distill.pop('eval_teacher', False))
        if distill:
            raise TypeError(f'EMADistillClassifier: unknown distill keys {sorted(distill)}')
        if not 0 <= self.alpha <= 1 or not 0 < self.momentum <= 1:
            raise ValueError('EMADistillClassifier: need 0 <= alpha <= 1 and 0 < momentum <= 1, '
                             f'got alpha={self.alpha}, momentum={self.momentum}')

        # the classifier mixes (after the teacher saw the clean batch), not the preprocessor
        augments = train_cfg
        if isinstance(data_preprocessor, dict):
            data_preprocessor = dict(data_preprocessor)
            augments = augments or data_preprocessor.get('batch_augments')
            data_preprocessor['batch_augments'] = None
        elif data_preprocessor is None:
            data_preprocessor = dict(batch_augments=None)
        elif getattr(data_preprocessor, 'batch_augments', None) is not None:
            raise ValueError('EMADistillClassifier: give the batch augments in train_cfg, not '
                             'in a built data preprocessor')
        super().__init__(backbone, neck, head, pretrained, None, data_preprocessor, init_cfg)
        self.batch_augments = self._build_augments(augments)

        if not (isinstance(self.neck, GlobalAveragePooling)
                and isinstance(self.neck.gap, nn.AdaptiveAvgPool2d)):
            raise TypeError('EMA distillation needs neck=GlobalAveragePooling over a 2-D feature '
                            f'map (the per-location teacher maps), got {type(self.neck).__name__}')
        if not isinstance(self.head, (LinearClsHead, StackedLinearClsHead)):
            raise TypeError('EMA distillation needs a LinearClsHead or StackedLinearClsHead, got '
                            f'{type(self.head).__name__}')
        teacher = nn.ModuleDict(dict(backbone=self.backbone, neck=self.neck, head=self.head))
        self.teacher = _params_to_buffers(copy.deepcopy(teacher)).eval()
        self._updated_by = None  # 'train_step' or 'hook' once something keeps the teacher moving
        self._warned = False
        self._register_load_state_dict_pre_hook(self._teacher_from_student, with_module=False)

    # ----------------------------------------------------------------------------- set-up
    @staticmethod
    def _build_augments(cfg) -> Optional[RandomBatchAugment]:
        if not cfg:
            return None
        cfg = dict(cfg)
        if cfg.get('probs') is not None:  # RandomBatchAugment appends to it
            cfg['probs'] = list(cfg['probs'])
        augments = cfg['augments']
        augments = list(augments) if isinstance(augments, (list, tuple)) else [augments]
        for i, aug in enumerate(augments):
            if isinstance(aug, dict):
                aug = dict(aug)
                kind = aug['type'].split('.')[-1] if isinstance(aug['type'], str) else aug['type']
                aug['type'] = MASKED_TWINS.get(kind, aug['type'])
                augments[i] = aug
        cfg['augments'] = augments
        batch_augments = RandomBatchAugment(**cfg)
        for aug in batch_augments.augments:
            if aug is not None and not hasattr(aug, 'mix_with_mask'):
                raise TypeError(f'EMA distillation needs batch augments that report their mask '
                                f'(CutMixWithMask, MixupWithMask), got {type(aug).__name__}')
        return batch_augments

    def _student_modules(self) -> dict:
        return dict(backbone=self.backbone, neck=self.neck, head=self.head)

    def init_weights(self):
        super().init_weights()
        if self.teacher is not None:
            self.sync_teacher()

    def train(self, mode: bool = True):
        super().train(mode)
        if getattr(self, 'teacher', None) is not None:
            self.teacher.eval()
        return self

    def _teacher_from_student(self, state_dict, prefix, *args):
        """Loading a checkpoint without ``teacher.*`` keys: the teacher starts from the
        student weights being loaded."""
        if any(k.startswith(prefix + 'teacher.') for k in state_dict):
            return
        for key in list(state_dict):
            rest = key[len(prefix):]
            if key.startswith(prefix) and rest.split('.', 1)[0] in ('backbone', 'neck', 'head'):
                state_dict[prefix + 'teacher.' + rest] = state_dict[key]

    # ----------------------------------------------------------------------------- teacher
    @torch.no_grad()
    def sync_teacher(self):
        """Copy the student's weights and buffers into the teacher."""
        self.update_teacher(momentum=1.)

    @torch.no_grad()
    def update_teacher(self, momentum: Optional[float] = None):
        """One EMA step: ``teacher = (1 - m) * teacher + m * student`` for parameters, a copy
        for buffers. ``m`` defaults to ``distill.momentum``."""
        m = self.momentum if momentum is None else float(momentum)
        averaged, current = [], []
        for part, student in self._student_modules().items():
            teacher = dict(self.teacher[part].named_buffers())
            for name, param in student.named_parameters():
                averaged.append(teacher[name])
                current.append(param.detach().to(teacher[name].dtype))
            for name, buf in student.named_buffers():
                teacher[name].copy_(buf)
        if m == 1.:
            for a, c in zip(averaged, current):
                a.copy_(c)
        else:
            torch._foreach_mul_(averaged, 1. - m)
            torch._foreach_add_(averaged, current, alpha=m)

    @torch.no_grad()
    def teacher_prob_maps(self, inputs: torch.Tensor) -> torch.Tensor:
        """The teacher's class probabilities at every location of its last feature map,
        ``(N, K, h, w)`` - the classifier with its average pooling removed."""
        feats = self.teacher['backbone'](inputs)
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.dim() != 4:
            raise RuntimeError('EMA distillation needs the backbone to return a feature map '
                               f'(N, C, h, w), got shape {tuple(x.shape)}')
        n, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        logits = self.teacher['head']((tokens, ))
        probs = logits.float().softmax(dim=-1)
        return probs.reshape(n, h, w, -1).permute(0, 3, 1, 2)

    # ----------------------------------------------------------------------------- training
    def _mix(self, inputs, scores):
        if self.batch_augments is None:
            return no_mix(inputs, scores)
        ba = self.batch_augments
        aug = ba.augments[np.random.choice(len(ba.augments), p=ba.probs)]
        if aug is None:
            return no_mix(inputs, scores)
        return aug.mix_with_mask(inputs, scores)

    def _one_hot(self, data_samples: List[DataSample], device) -> torch.Tensor:
        if 'gt_score' in data_samples[0]:
            return torch.stack([s.gt_score for s in data_samples]).to(device).float()
        labels = torch.cat([s.gt_label for s in data_samples]).to(device)
        if labels.numel() != len(data_samples):
            raise ValueError('EMA distillation supports single-label samples only')
        return F.one_hot(labels, self.head.num_classes).float()

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        """Mix the batch, build ȳ from the teacher's maps of the clean images, train the
        student on (x̃, ȳ) with the head's loss."""
        if self.teacher is None:
            return super().loss(inputs, data_samples)
        if self._updated_by is None and not self._warned:
            warnings.warn('EMADistillClassifier.loss() ran outside its train_step and without '
                          'EMADistillHook: nothing updates the EMA teacher. Under DDP (or any '
                          "wrapper) add custom_hooks=[dict(type='EMADistillHook')], or call "
                          'update_teacher() after each optimizer step.')
            self._warned = True
        scores = self._one_hot(data_samples, inputs.device)
        mixed_inputs, mixed_scores, info = self._mix(inputs, scores)
        target = ema_distill_target(mixed_scores, self.teacher_prob_maps(inputs), info,
                                    self.alpha)
        for sample, score in zip(data_samples, target):
            sample.set_gt_score(score)
        feats = self.extract_feat(mixed_inputs)
        return self.head.loss(feats, data_samples)

    def train_step(self, data, optim_wrapper):
        """mmengine's train step, then one EMA step of the teacher whenever the optimizer
        stepped. (Wrapped models, e.g. DDP, do not call this: :class:`EMADistillHook` does
        the update there.)"""
        if self.teacher is None:
            return super().train_step(data, optim_wrapper)
        if self._updated_by is None:
            self._updated_by = 'train_step'
        log_vars = super().train_step(data, optim_wrapper)
        if self._updated_by == 'train_step' and optim_wrapper.should_update():
            self.update_teacher()
        return log_vars

    # ----------------------------------------------------------------------------- evaluation
    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """Predict with the student, or with the teacher when ``eval_teacher=True``."""
        if self.teacher is None or not self.eval_teacher:
            return super().predict(inputs, data_samples, **kwargs)
        feats = self.teacher['neck'](self.teacher['backbone'](inputs))
        return self.teacher['head'].predict(feats, data_samples, **kwargs)


@HOOKS.register_module()
class EMADistillHook(Hook):
    """Updates the EMA teacher of an :class:`EMADistillClassifier` after every optimizer step
    when the model is wrapped (DDP and other wrappers skip the classifier's own
    ``train_step``). On an unwrapped model it does nothing: the classifier updates itself.
    """
    priority = 'ABOVE_NORMAL'  # before CheckpointHook saves

    def before_train(self, runner) -> None:
        self._wrapped = is_model_wrapper(runner.model)
        model = runner.model.module if self._wrapped else runner.model
        self._model = model if getattr(model, 'teacher', None) is not None else None
        if self._model is not None and self._wrapped:
            self._model._updated_by = 'hook'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._model is None or not self._wrapped:
            return
        if runner.optim_wrapper.should_update():
            self._model.update_teacher()


__all__ = ['EMADistillClassifier', 'EMADistillHook', 'ema_distill_target', 'resize_mask',
           'MixupWithMask', 'CutMixWithMask', 'MixInfo', 'MASKED_TWINS']
