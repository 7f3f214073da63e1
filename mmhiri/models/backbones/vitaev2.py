"""ViTAEv2: the multi-stage ViTAE (Zhang et al., ViTAEv2, §3 and Table 1)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ...registry import register_model
from ..layers.common import drop_path_rates, nlc_to_nchw, trunc_normal_init_
from ..layers.vitae_cells import NormalCell, ReductionCell, ViTAEStage
from .base import BaseBackbone, check_stage_lists, resolve_arch
from ..layers.vitae_cells import check_strides

_V2_COMMON = dict(
    strides=[4, 2, 2, 2], kernel_sizes=[7, 3, 3, 3],
    dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 2]],
    attn_types=['window', 'window', 'transformer', 'transformer'], mlp_ratio=4.,
    rc_groups=[1, 16, 32, 64], nc_groups=[1, 32, 64, 128])


@register_model
class ViTAEv2(BaseBackbone):
    """ViTAEv2 backbone: four stages of one reduction cell + normal cells, strides 4/8/16/32.

    image -> ``stages[i].reduction`` (PRM dilated convs + attention, in parallel with a strided
    PCM, then FFN) -> ``stages[i].blocks`` (normal cells: attention in parallel with a PCM,
    then FFN) -> NCHW map of stage ``i``, for ``i`` in ``out_indices``. Window attention in
    stages 0-1, full attention in stages 2-3.

    The parameter layout and numerics are those of the official implementation (load its
    checkpoints with ``tools/model_converters/vitae2mmhiri.py``); unlike it, any input size
    works (reduction cells pad right/bottom by at most ``stride - 2`` pixels where their two
    branches would disagree; window attention pads and crops), stage ``i`` has size
    ``ceil(H / stride_i)``, and inputs the official code accepts give its outputs exactly.
    No norm is applied to the outputs (as upstream). For classification, pool the last stage
    and apply a linear head (``configs/imagenet/vitaev2_s_224.py``).

    Arch settings follow the official code; they match Table 1 except ViTAEv2-B, whose heads
    are 1,1,4,8 (reduction) and 1,4,8,16 (normal) in the code. Per-dilation PRM widths
    (``embed_dims``) are not in the paper.

    Args:
        arch (str | dict): ``'s'``, ``'48m'``, ``'b'`` or a dict with the keys of
            ``arch_zoo['s']``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return. Defaults to (0, 1, 2, 3).
        window_size (int): Window of the normal cells' window attention (the reduction
            cells always use 7, as upstream). Defaults to 7.
        qkv_bias (bool): qkv bias in normal cells. Defaults to True.
        drop_rate (float): Dropout in FFNs and attention projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth over the normal cells, linear in the global
            cell index (the usual cumulative schedule). Defaults to 0.1.
        frozen_stages (int): -1 = none; k = stages 0..k. Defaults to -1.
        norm_eval (bool): BN layers in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per normal cell. Defaults to False.
        fused_attn (bool): Fused attention kernel (True) or the explicit product (False),
            same parameters; see :meth:`set_fused_attn`. Defaults to True.
        memory_efficient (bool): Recompute light layers (BN + activation, CFFN activation +
            depth-wise conv) in backward instead of keeping their outputs (same results, less
            memory); see :meth:`set_memory_efficient`. Defaults to True.
        deploy (bool): Build the folded inference form (BatchNorms folded into convolutions,
            as :meth:`switch_to_deploy` leaves a trained model), to load a folded checkpoint.
            Defaults to False.
        check_finite (bool): Refuse inputs holding NaN or inf (one line) instead of letting
            them poison BatchNorm statistics; False skips the check. Defaults to True.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=..., prefix=...)``.

    Examples:
        >>> import torch
        >>> from mmhiri.models import ViTAEv2
        >>> model = ViTAEv2('s').eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 64, 56, 56)
        (1, 128, 28, 28)
        (1, 256, 14, 14)
        (1, 512, 7, 7)
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], dict(
            _V2_COMMON, embed_dims=[64, 64, 128, 256], token_dims=[64, 128, 256, 512],
            depths=[2, 2, 8, 2], rc_heads=[1, 1, 2, 4], nc_heads=[1, 2, 4, 8])),
        '48m': dict(
            _V2_COMMON, embed_dims=[64, 64, 192, 384], token_dims=[96, 192, 384, 768],
            depths=[2, 2, 11, 2], rc_heads=[1, 1, 2, 4], nc_heads=[1, 2, 4, 8]),
        **dict.fromkeys(['b', 'base'], dict(
            _V2_COMMON, embed_dims=[96, 96, 256, 512], token_dims=[128, 256, 512, 1024],
            depths=[2, 2, 12, 2], rc_heads=[1, 1, 4, 8], nc_heads=[1, 4, 8, 16])),
    }
    required_keys = ('embed_dims', 'token_dims', 'depths', 'rc_heads', 'nc_heads', 'strides',
                     'kernel_sizes', 'dilations', 'attn_types', 'mlp_ratio', 'rc_groups',
                     'nc_groups')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 window_size: int = 7,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fused_attn: bool = True,
                 memory_efficient: bool = True,
                 deploy: bool = False,
                 check_finite: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        self.arch_settings = resolve_arch(arch, self.arch_zoo, self.required_keys, 'ViTAEv2')
        a = self.arch_settings
        n = len(a['token_dims'])
        check_stage_lists(a, [k for k in self.required_keys if k != 'mlp_ratio'], n, 'ViTAEv2')
        check_strides(a['strides'], 'ViTAEv2')
        strides, total = [], 1
        for r in a['strides']:
            total *= r
            strides.append(total)
        super().__init__(a['token_dims'], strides, out_indices, frozen_stages, norm_eval,
                         with_cp, in_channels, init_cfg,
                         fused_attn, memory_efficient, deploy, check_finite)
        self.stem = None
        dprs = drop_path_rates(drop_path_rate, a['depths'])
        self.stages = nn.ModuleList()
        in_ch = in_channels
        for i in range(n):
            reduction = ReductionCell(
                in_ch, a['embed_dims'][i], a['token_dims'][i], a['strides'][i],
                a['kernel_sizes'][i], a['dilations'][i], a['attn_types'][i], a['rc_heads'][i],
                a['rc_groups'][i], pcm_norms=(True, True, False), pcm_final_act=False,
                window_size=7, transformer_qkv_bias=False, norm_eps=1e-5, deploy=deploy)
            blocks = [
                NormalCell(a['token_dims'][i], a['nc_heads'][i], a['mlp_ratio'],
                           a['attn_types'][i], window_size, a['nc_groups'][i], qkv_bias,
                           pcm_layout='v2', drop=drop_rate, attn_drop=attn_drop_rate,
                           drop_path=dp, deploy=deploy) for dp in dprs[i]
            ]
            self.stages.append(ViTAEStage(reduction, blocks))
            in_ch = a['token_dims'][i]
        self._finish_init()

    def init_weights(self):
        if self.init_cfg is not None:
            return super().init_weights()
        trunc_normal_init_(self, conv_fan_out=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.check_input(x)
        outs = {}
        for i, stage in enumerate(self.stages):
            tokens, hw = stage(x, with_cp=self.with_cp)
            x = nlc_to_nchw(tokens, hw)
            if i in self.out_indices:
                outs[i] = x
        return self.finish_outputs(outs)
