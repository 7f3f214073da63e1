"""HIRI-ViT: a five-stage hybrid backbone for high-resolution inputs (Yao et al., HIRI-ViT)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ...registry import register_model
from ..layers.common import drop_path_rates, maybe_checkpoint, trunc_normal_init_
from ..layers.hiri_blocks import IRDS, CFFNBlock, HRBlock, HRStem, TransformerBlock
from ..layers.norm import build_norm2d
from .base import BaseBackbone, resolve_arch


class HIRIStage(nn.Module):
    """One HIRI-ViT stage: an optional IRDS down-sampling followed by blocks of one type."""

    def __init__(self, block_type: str, in_channels: int, channels: int, depth: int,
                 expansion: float, num_heads: Optional[int], drop_paths: Sequence[float],
                 downsample: Optional[str], downsample_hidden: int, act: str,
                 drop_rate: float, attn_drop_rate: float, qkv_bias: bool,
                 deploy: bool = False):
        super().__init__()
        self.downsample = IRDS(in_channels, channels, downsample, downsample_hidden, act,
                               deploy=deploy) if downsample else None
        blocks = []
        for dp in drop_paths:
            if block_type == 'hr':
                blocks.append(HRBlock(channels, expansion, dp, act=act, deploy=deploy))
            elif block_type == 'cffn':
                blocks.append(CFFNBlock(channels, expansion, dp, act=act, drop=drop_rate,
                                        deploy=deploy))
            elif block_type == 'transformer':
                blocks.append(TransformerBlock(channels, num_heads, expansion, dp, act=act,
                                               qkv_bias=qkv_bias, drop=drop_rate,
                                               attn_drop=attn_drop_rate, deploy=deploy))
            else:
                raise ValueError(f"unknown HIRI-ViT block type {block_type!r}; expected "
                                 "'hr', 'cffn' or 'transformer'")
        assert len(blocks) == depth
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, with_cp: bool = False) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = maybe_checkpoint(block, x, enabled=with_cp)
        return x


@register_model
class HIRIViT(BaseBackbone):
    """HIRI-ViT backbone (five stages, strides 4/8/16/32/64).

    image -> ``stem`` (HR-stem, stride 4) -> ``stages[0]`` (HR blocks) -> ``stages[1]`` (IRDS-a,
    HR blocks) -> ``stages[2]`` (IRDS-a, CFFN blocks) -> ``stages[3]``, ``stages[4]`` (IRDS-b,
    Transformer blocks) -> ``out_norm{i}`` for ``i`` in ``out_indices``.

    Widths, depths, heads and expansion ratios are Table 1 of the paper. Where the paper leaves a
    detail open, this implementation chooses (paper passage in brackets):

    * GELU activations throughout [§3, Eq. 3 "sigma"]; BN in the stem, stages 1-3 and every
      CFFN, LN (eps 1e-6) before attention in stages 4-5 [§4.4].
    * HR-stem [§4.1]: 3x3/2 conv to ``stem_channels`` (= C1) + BN + GELU; high branch: 3x3 depth-wise
      conv + BN + GELU, 3x3/2 conv; low branch: 3x3/2 conv + BN + GELU, 3x3 conv + BN + GELU,
      1x1 conv; sum, BN.
    * HR block [§4.2]: ``x + BN(DW3x3(x) + Up2(FFN(BN(DW3x3/2(x)))))`` - residual, the fused
      sum batch-normed as in the HR-stem; FFN = 1x1 conv (x E) + GELU + 1x1 conv; "upsampling by
      repetition" = nearest x2, cropped to the input size.
    * CFFN block [§3 Eq. 3, §4.4]: ``x + CFFN(BN(x))``; Transformer block:
      ``x + MHA(LN(x))`` then ``x + CFFN(BN(x))``; full attention (no spatial reduction: the
      paper names it only for the M-ViT baseline's first two stages), qkv with bias, and no
      positional embedding (the CFFN's depth-wise conv carries position).
    * IRDS [§4.3, Fig. 5]: IRDS-a = 3x3/2 conv (Cin -> 2 x Cout, "expand the dimension") + BN +
      GELU, 1x1 conv + BN; IRDS-b = 1x1 conv (Cin -> 6 x Cin, the expansion t=6 of the inverted
      residual block [44] it follows) + BN + GELU, 3x3/2
      depth-wise conv, 1x1 conv ("normalization and activation only after the first
      convolution"); both plus a shortcut of 2x2 average pooling + 1x1 conv + BN ("extra
      down-sampling shortcuts").
    * Output norms (BN for stages 0-2, LN for 3-4) only for the stages in ``out_indices``.
    * Every stride-2 step maps H to ceil(H/2), so any H x W works without padding and stage
      ``i`` has size ``ceil(H / stride_i)``.

    The classification head is not part of the backbone: see ``configs/imagenet`` and
    ``HIRIViT.cls_head_cfg`` (GAP + a C -> 5C -> classes MLP, the reading of Table 2's head that
    matches both the S and B parameter counts).

    Sizes (``tools/analysis/paper_table.py``): S/B/L backbones 30.85 / 49.06 / 88.68 M
    (Tables 4-6 imply 30.9 / 49.2 M for S/B); with the head 34.72 / 54.31 / 93.93 M (Table 2:
    34.8 / 54.4 / 94.4); 5.00 / 9.73 / 20.26 GFLOPs at 448 and 15.99 / 31.05 / 64.51 at 768
    (Tables 2-3: 5.0 / 9.9 / 19.9 and 16.1 / 31.6 / 63.4). Table 2's 224 and 384 rows
    (S: 4.5 / 4.7 G, 90 % of the 448 cost at a quarter of the pixels) cannot come from this
    network fed smaller images, whose cost scales with the pixel count: it gives 1.27 / 3.63 G.

    For dense prediction the paper feeds 2x resolution and uses stages 2-5 (strides 8-64), so a
    neck sees the same grid as a four-stage backbone at 1x: ``out_indices=(1, 2, 3, 4)`` is the
    default.

    Args:
        arch (str | dict): ``'s'``, ``'b'``, ``'l'`` or a dict with the keys of ``arch_zoo``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return. Defaults to (1, 2, 3, 4).
        drop_rate (float): Dropout in FFNs and attention projections. Defaults to 0.
        attn_drop_rate (float): Dropout on attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linear over all blocks. Defaults to 0.1.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        act (str): Activation. Defaults to 'gelu'.
        frozen_stages (int): -1 = none; k = stem + stages 0..k. Defaults to -1.
        norm_eval (bool): BN layers in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
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
        >>> from mmhiri.models import HIRIViT
        >>> model = HIRIViT('s', out_indices=(0, 1, 2, 3, 4)).eval()
        >>> for out in model(torch.rand(1, 3, 448, 448)):
        ...     print(tuple(out.shape))
        (1, 32, 112, 112)
        (1, 64, 56, 56)
        (1, 128, 28, 28)
        (1, 320, 14, 14)
        (1, 512, 7, 7)
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], dict(
            channels=[32, 64, 128, 320, 512], depths=[2, 2, 2, 9, 4],
            expansions=[4, 4, 6, 5, 5], num_heads=[None, None, None, 5, 8],
            block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
            stem_channels=32, irds_a_expansion=2, irds_b_expansion=6)),
        **dict.fromkeys(['b', 'base'], dict(
            channels=[64, 96, 192, 320, 640], depths=[2, 2, 3, 17, 4],
            expansions=[4, 4, 5, 4, 5], num_heads=[None, None, None, 5, 10],
            block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
            stem_channels=64, irds_a_expansion=2, irds_b_expansion=6)),
        **dict.fromkeys(['l', 'large'], dict(
            channels=[80, 160, 224, 448, 640], depths=[4, 4, 5, 25, 5],
            expansions=[4, 4, 5, 3, 5], num_heads=[None, None, None, 7, 10],
            block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
            stem_channels=80, irds_a_expansion=2, irds_b_expansion=6)),
    }
    required_keys = ('channels', 'depths', 'expansions', 'num_heads', 'block_types',
                     'stem_channels', 'irds_a_expansion', 'irds_b_expansion')
    strides = (4, 8, 16, 32, 64)
    downsample_types = (None, 'a', 'a', 'b', 'b')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 qkv_bias: bool = True,
                 act: str = 'gelu',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fused_attn: bool = True,
                 memory_efficient: bool = True,
                 deploy: bool = False,
                 check_finite: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        self.arch_settings = resolve_arch(arch, self.arch_zoo, self.required_keys, 'HIRIViT')
        arch = self.arch_settings
        for key in ('channels', 'depths', 'expansions', 'num_heads', 'block_types'):
            if len(arch[key]) != 5:
                raise ValueError(f'HIRIViT arch[{key!r}] needs 5 entries (one per stage), '
                                 f'got {arch[key]!r}')
        super().__init__(arch['channels'], self.strides, out_indices, frozen_stages, norm_eval,
                         with_cp, in_channels, init_cfg,
                         fused_attn, memory_efficient, deploy, check_finite)
        channels = arch['channels']
        self.stem = HRStem(in_channels, channels[0], arch['stem_channels'], act=act,
                           deploy=deploy)
        dprs = drop_path_rates(drop_path_rate, arch['depths'])
        self.stages = nn.ModuleList()
        for i in range(5):
            down = self.downsample_types[i]
            self.stages.append(
                HIRIStage(arch['block_types'][i], channels[i - 1] if i else channels[0],
                          channels[i], arch['depths'][i], arch['expansions'][i],
                          arch['num_heads'][i], dprs[i], down,
                          self._irds_hidden(i), act, drop_rate,
                          attn_drop_rate, qkv_bias, deploy))
        for i in self.out_indices:
            kind = 'ln' if arch['block_types'][i] == 'transformer' else 'bn'
            self.add_module(f'out_norm{i}', build_norm2d(kind, channels[i]))
        self._finish_init()

    def _irds_hidden(self, i: int) -> int:
        """Hidden width of the IRDS in front of stage ``i``: IRDS-a expands to
        ``irds_a_expansion`` x its output width, IRDS-b (an inverted residual) to
        ``irds_b_expansion`` x its input width."""
        down = self.downsample_types[i]
        if down == 'a':
            return int(self.arch_settings['irds_a_expansion'] * self.stage_channels[i])
        if down == 'b':
            return int(self.arch_settings['irds_b_expansion'] * self.stage_channels[i - 1])
        return 0

    def init_weights(self):
        if self.init_cfg is not None:
            return super().init_weights()
        trunc_normal_init_(self)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.check_input(x)
        x = self.stem(x)
        outs = {}
        for i, stage in enumerate(self.stages):
            x = stage(x, with_cp=self.with_cp)
            if i in self.out_indices:
                outs[i] = getattr(self, f'out_norm{i}')(x)
        return self.finish_outputs(outs)
