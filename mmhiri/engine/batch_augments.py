"""Mixup and CutMix that also say how they mixed: the pairing and the mask M.

HIRI-ViT's EMA distillation (§4.5, Eqs. 4-5) mixes the teacher's per-location probability maps
of the two original images with the same mask M that mixed the images. mmpretrain's stock
:class:`~mmpretrain.models.utils.CutMix` and :class:`~mmpretrain.models.utils.Mixup` only return
the mixed batch, so the two classes here subclass them and add :meth:`mix_with_mask`, which
returns the mixed batch, the mixed one-hot labels and a :class:`MixInfo`. They draw their random
numbers in the same order as the stock classes, so with the same seeds they produce the same
images and labels; their ``__call__`` returns what the stock ones return, so they also work in
``ClsDataPreprocessor(batch_augments=...)``.

Both are registered in mmpretrain's ``BATCH_AUGMENTS`` as ``'CutMixWithMask'`` and
``'MixupWithMask'``. This module imports mmpretrain; ``import mmhiri`` never imports it (load it
with ``custom_imports=dict(imports=['mmhiri', 'mmhiri.engine'])``).
"""
from typing import NamedTuple, Tuple

import numpy as np
import torch
from mmpretrain.models.utils.batch_augments import CutMix, Mixup
from mmpretrain.registry import BATCH_AUGMENTS


class MixInfo(NamedTuple):
    """How a batch was mixed (the notation of HIRI-ViT Eq. 4).

    Sample ``i`` of the mixed batch is ``mask * x[i] + (1 - mask) * x[index[i]]``: ``x[i]`` is
    x_a, ``x[index[i]]`` is x_b, ``mask`` is M at image resolution with shape ``(1 or N, 1, H, W)``
    (CutMix: 1 outside the pasted box, 0 inside; Mixup: the constant λ), and ``lam`` is the λ of
    the mixed label ỹ = λ y_a + (1 - λ) y_b.
    """
    index: torch.Tensor
    mask: torch.Tensor
    lam: float


def no_mix(batch_inputs: torch.Tensor, batch_scores: torch.Tensor
           ) -> Tuple[torch.Tensor, torch.Tensor, MixInfo]:
    """The identity "mix" (M = 1, each sample paired with itself), for batches that no
    augment was drawn for."""
    n, _, h, w = batch_inputs.shape
    info = MixInfo(torch.arange(n, device=batch_inputs.device),
                   batch_inputs.new_ones(1, 1, h, w), 1.)
    return batch_inputs, batch_scores.float(), info


@BATCH_AUGMENTS.register_module()
class MixupWithMask(Mixup):
    """mmpretrain's Mixup that also returns a :class:`MixInfo` (M is the constant λ).

    Args:
        alpha (float): Beta(alpha, alpha) parameter of the mixing ratio λ.
    """

    def mix_with_mask(self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, MixInfo]:
        """Draw λ and the pairing as the stock Mixup does, then :meth:`apply` them."""
        lam = np.random.beta(self.alpha, self.alpha)
        index = torch.randperm(batch_inputs.size(0))
        return self.apply(batch_inputs, batch_scores, index.to(batch_inputs.device), lam)

    @staticmethod
    def apply(batch_inputs: torch.Tensor, batch_scores: torch.Tensor, index: torch.Tensor,
              lam: float) -> Tuple[torch.Tensor, torch.Tensor, MixInfo]:
        """Mix with a given pairing ``index`` and ratio ``lam`` (the inputs are not modified)."""
        lam = float(lam)
        batch_scores = batch_scores.float()
        mixed_inputs = lam * batch_inputs + (1 - lam) * batch_inputs[index]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index]
        h, w = batch_inputs.shape[-2:]
        mask = batch_inputs.new_full((1, 1, h, w), lam)
        return mixed_inputs, mixed_scores, MixInfo(index, mask, lam)

    def mix(self, batch_inputs, batch_scores):
        mixed_inputs, mixed_scores, _ = self.mix_with_mask(batch_inputs, batch_scores)
        return mixed_inputs, mixed_scores


@BATCH_AUGMENTS.register_module()
class CutMixWithMask(CutMix):
    """mmpretrain's CutMix that also returns a :class:`MixInfo` (M is 1 outside the box).

    As in the stock CutMix, one box is drawn per batch, the box of ``x[index[i]]`` is pasted
    into ``x[i]``, and with ``correct_lam=True`` (the default) λ is the exact fraction of the
    image left to ``x[i]``, i.e. the mean of M (Eq. 4). Unlike the stock CutMix, the input batch
    is not modified in place: EMA distillation still needs the original images.

    Args:
        alpha (float): Beta(alpha, alpha) parameter of λ, which sets the box area.
        cutmix_minmax (List[float], optional): Min/max box side ratio; overrides ``alpha``.
        correct_lam (bool): Recompute λ from the clipped box. Defaults to True.
    """

    def mix_with_mask(self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, MixInfo]:
        """Draw λ, the pairing and the box as the stock CutMix does, then :meth:`apply`."""
        lam = np.random.beta(self.alpha, self.alpha)
        index = torch.randperm(batch_inputs.size(0))
        bbox, lam = self.cutmix_bbox_and_lam(batch_inputs.shape[-2:], lam)
        return self.apply(batch_inputs, batch_scores, index.to(batch_inputs.device), bbox, lam)

    @staticmethod
    def apply(batch_inputs: torch.Tensor, batch_scores: torch.Tensor, index: torch.Tensor,
              bbox: Tuple[int, int, int, int], lam: float = None
              ) -> Tuple[torch.Tensor, torch.Tensor, MixInfo]:
        """Paste box ``bbox = (y1, y2, x1, x2)`` of ``x[index[i]]`` into ``x[i]``.

        ``lam`` defaults to the mean of M (the area left to ``x[i]``)."""
        y1, y2, x1, x2 = (int(v) for v in bbox)
        h, w = batch_inputs.shape[-2:]
        mask = batch_inputs.new_ones(1, 1, h, w)
        mask[..., y1:y2, x1:x2] = 0
        if lam is None:
            lam = 1. - (y2 - y1) * (x2 - x1) / float(h * w)
        lam = float(lam)
        batch_scores = batch_scores.float()
        mixed_inputs = batch_inputs.clone()
        mixed_inputs[:, :, y1:y2, x1:x2] = batch_inputs[index, :, y1:y2, x1:x2]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index]
        return mixed_inputs, mixed_scores, MixInfo(index, mask, lam)

    def mix(self, batch_inputs, batch_scores):
        mixed_inputs, mixed_scores, _ = self.mix_with_mask(batch_inputs, batch_scores)
        return mixed_inputs, mixed_scores
