"""ViTAE: the isotropic ViTAE (Xu et al., ViTAE; §3 and Table 1 of the ViTAEv2 paper)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ...registry import register_model
from ..layers.common import drop_path_rates, nlc_to_nchw, trunc_normal_init_
from ..layers.vitae_cells import (NormalCell, PatchEmbedReduction, ReductionCell, ViTAEStage,
                                  check_strides)
from .base import BaseBackbone, check_stage_lists, resolve_arch

_V1_COMMON = dict(
    strides=[4, 2, 2], kernel_sizes=[7, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2]],
    rc_types=['performer', 'performer', None], rc_groups=[1, 1, 1], nc_groups=[1, 1, 64],
    mlp_ratio=2., embed_dims=[64, 64, 128], token_dims=[64, 64, 256])
_VIT_COMMON = dict(patch_size=16, mlp_ratio=4., class_token=True)


@register_model
class ViTAE(BaseBackbone):
    """Isotropic ViTAE backbone.

    T / 6M / 13M / S: image -> ``stages[0]`` (Performer reduction cell, stride 4) ->
    ``stages[1]`` (Performer reduction cell, stride 8) -> ``stages[2]`` (a PRM-only reduction
    cell, stride 16, then the normal cells) -> outputs. B / L / H (§3.3, ViT-style): one stage, a
    16x16 patch embedding with class token and position table, then normal cells with a
    two-conv PCM; ``avg_norm`` normalises the pooled tokens.

    ``out_type`` chooses the output of each stage in ``out_indices``: ``'featmap'`` (NCHW map;
    the default, stride 16 for the last stage), ``'avg_featmap'`` (mean over patch tokens,
    (N, C): the pooled form the official classifier feeds to its linear head) or
    ``'cls_token'`` (B/L/H only).

    The official Performer reduction cells hard-code a dropout of 0.1 after the attention and
    the FFN; here both follow ``drop_rate`` (default 0, identical in eval).

    Parameter layout and numerics follow the official implementation (convert its checkpoints
    with ``tools/model_converters/vitae2mmhiri.py``); any input size works (reduction cells pad
    right/bottom by at most ``stride - 2`` pixels where their two branches would disagree), and
    the official outputs are reproduced exactly where the official code runs.

    Arch settings are the official code's. They differ from Table 1 as follows: ViTAE-S uses
    6 heads, MLP ratio 3 and PCM groups 96; **ViTAE-13M follows the official code** (5 heads,
    PCM groups 64: 10.8 M parameters with a 1000-class head), not Table 1's 13.2 M, which this
    layout reaches only with normal-cell PCM groups of 16
    (``arch=dict(ViTAE.arch_zoo['13m'], nc_groups=[1, 1, 16])``).

    Args:
        arch (str | dict): ``'t'``, ``'6m'``, ``'13m'``, ``'s'``, ``'b'``, ``'l'``, ``'h'`` or
            a dict with the keys of ``arch_zoo['t']`` (or of ``arch_zoo['b']``).
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return. Defaults to (-1,), the last.
        out_type (str): 'featmap', 'avg_featmap' or 'cls_token'. Defaults to 'featmap'.
        img_size (int): Build size of B/L/H's position table. Defaults to 224.
        qkv_bias (bool): qkv bias in normal cells. Defaults to True.
        drop_rate (float): Dropout in FFNs and attention projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linear over the normal cells. Defaults to 0.
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
        >>> from mmhiri.models import ViTAE
        >>> model = ViTAE('t', out_indices=(0, 1, 2)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 64, 56, 56)
        (1, 64, 28, 28)
        (1, 256, 14, 14)
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(_V1_COMMON, depths=[0, 0, 7], nc_heads=[1, 1, 4])),
        '6m': dict(_V1_COMMON, depths=[0, 0, 10], nc_heads=[1, 1, 4]),
        '13m': dict(_V1_COMMON, embed_dims=[64, 64, 160], token_dims=[64, 64, 320],
                    depths=[0, 0, 11], nc_heads=[1, 1, 5]),
        **dict.fromkeys(['s', 'small'], dict(
            _V1_COMMON, embed_dims=[64, 64, 192], token_dims=[96, 192, 384],
            depths=[0, 0, 14], nc_heads=[1, 1, 6], mlp_ratio=3., nc_groups=[1, 1, 96])),
        **dict.fromkeys(['b', 'base'], dict(
            _VIT_COMMON, dim=768, depth=12, num_heads=12, nc_groups=192)),
        **dict.fromkeys(['l', 'large'], dict(
            _VIT_COMMON, dim=1024, depth=24, num_heads=16, nc_groups=256)),
        **dict.fromkeys(['h', 'huge'], dict(
            _VIT_COMMON, dim=1280, depth=32, num_heads=16, nc_groups=320)),
    }
    required_keys = ('embed_dims', 'token_dims', 'depths', 'nc_heads', 'strides', 'kernel_sizes',
                     'dilations', 'rc_types', 'rc_groups', 'nc_groups', 'mlp_ratio')
    vit_required_keys = ('patch_size', 'dim', 'depth', 'num_heads', 'nc_groups', 'mlp_ratio')
    out_types = ('featmap', 'avg_featmap', 'cls_token')

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 img_size: int = 224,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fused_attn: bool = True,
                 memory_efficient: bool = True,
                 deploy: bool = False,
                 check_finite: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        vit_style = isinstance(arch, dict) and 'patch_size' in arch or \
            isinstance(arch, str) and 'patch_size' in self.arch_zoo.get(arch.lower(), {})
        self.arch_settings = resolve_arch(
            arch, self.arch_zoo, self.vit_required_keys if vit_style else self.required_keys,
            'ViTAE')
        a = self.arch_settings
        if out_type not in self.out_types:
            raise ValueError(f'ViTAE: out_type must be one of {self.out_types}, got {out_type!r}')
        if out_type == 'cls_token' and not vit_style:
            raise ValueError("ViTAE: out_type='cls_token' needs a class token (arch 'b', 'l', "
                             "'h'); use 'avg_featmap' for the pooled features")
        self.out_type = out_type
        if vit_style:
            channels, strides = [a['dim']], [a['patch_size']]
        else:
            channels, strides, total = a['token_dims'], [], 1
            for r in a['strides']:
                total *= r
                strides.append(total)
        super().__init__(channels, strides, out_indices, frozen_stages, norm_eval, with_cp,
                         in_channels, init_cfg,
                         fused_attn, memory_efficient, deploy, check_finite)
        self.stem = None
        self.stages = nn.ModuleList()
        if vit_style:
            dprs = drop_path_rates(drop_path_rate, [a['depth']])[0]
            reduction = PatchEmbedReduction(in_channels, a['dim'], a['patch_size'], img_size)
            blocks = [
                NormalCell(a['dim'], a['num_heads'], a['mlp_ratio'], 'transformer',
                           groups=a['nc_groups'], qkv_bias=qkv_bias, pcm_layout='shallow',
                           drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dp,
                           num_prefix_tokens=1, deploy=deploy) for dp in dprs
            ]
            self.stages.append(ViTAEStage(reduction, blocks))
            self.avg_norm = nn.LayerNorm(a['dim'], eps=1e-6)
        else:
            check_stage_lists(a, [k for k in self.required_keys if k != 'mlp_ratio'],
                              len(a['token_dims']), 'ViTAE')
            check_strides(a['strides'], 'ViTAE')
            dprs = drop_path_rates(drop_path_rate, a['depths'])
            in_ch = in_channels
            for i in range(len(a['token_dims'])):
                rc_type = a['rc_types'][i]
                if rc_type is None and a['embed_dims'][i] * len(a['dilations'][i]) != \
                        a['token_dims'][i]:
                    raise ValueError(
                        f'ViTAE stage {i}: a PRM-only reduction cell outputs embed_dim x '
                        f"len(dilations) = {a['embed_dims'][i] * len(a['dilations'][i])} "
                        f"channels, but token_dims[{i}] is {a['token_dims'][i]}")
                reduction = ReductionCell(
                    in_ch, a['embed_dims'][i], a['token_dims'][i], a['strides'][i],
                    a['kernel_sizes'][i], a['dilations'][i], rc_type, 1, a['rc_groups'][i],
                    pcm_norms=(False, True, False), pcm_final_act=True, norm_eps=1e-5,
                    drop=drop_rate, deploy=deploy)
                blocks = [
                    NormalCell(a['token_dims'][i], a['nc_heads'][i], a['mlp_ratio'],
                               'transformer', groups=a['nc_groups'][i], qkv_bias=qkv_bias,
                               pcm_layout='v1', drop=drop_rate, attn_drop=attn_drop_rate,
                               drop_path=dp, deploy=deploy) for dp in dprs[i]
                ]
                self.stages.append(ViTAEStage(reduction, blocks))
                in_ch = a['token_dims'][i]
        self.avg_norm = getattr(self, 'avg_norm', None)
        self._finish_init()

    def _stage_extras(self, i: int):
        """The pooled-token norm belongs to the last stage (frozen with it)."""
        extras = super()._stage_extras(i)
        if self.avg_norm is not None and i == self.num_stages - 1:
            extras.append(self.avg_norm)
        return extras

    def _output_stage_of(self, name: str):
        """The pooled-token norm normalises the last stage's output."""
        if name.startswith('avg_norm.'):
            return self.num_stages - 1
        return super()._output_stage_of(name)

    def init_weights(self):
        if self.init_cfg is not None:
            return super().init_weights()
        trunc_normal_init_(self, conv_fan_out=False)

    def _output(self, tokens: torch.Tensor, hw: Tuple[int, int], prefix: int):
        if self.out_type == 'cls_token':
            return tokens[:, 0]
        patches = tokens[:, prefix:]
        if self.out_type == 'featmap':
            return nlc_to_nchw(patches, hw)
        pooled = patches.mean(dim=1)
        return self.avg_norm(pooled) if self.avg_norm is not None else pooled

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.check_input(x)
        outs = {}
        for i, stage in enumerate(self.stages):
            tokens, hw = stage(x, with_cp=self.with_cp)
            prefix = stage.num_prefix_tokens
            x = nlc_to_nchw(tokens[:, prefix:], hw)
            if i in self.out_indices:
                outs[i] = self._output(tokens, hw, prefix)
        return self.finish_outputs(outs)
