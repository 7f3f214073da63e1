"""ViTAE building blocks: the reduction cell and the normal cell (ViTAE §3, ViTAEv2 §3).

Both cells run a convolution branch (``PCM``) in parallel with attention and sum them before
the FFN. They take and return (N, L, C) tokens with the spatial shape passed explicitly.
"""
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MultiheadAttention, PerformerAttention, WindowAttention
from .common import (DropPath, bn_act, maybe_checkpoint, nchw_to_nlc, nlc_to_nchw,
                     pad_to_multiple, sizes_are_symbolic)
from .ffn import Mlp
from .reparam import fuse_conv_bn


class PCM(nn.Sequential):
    """Parallel Convolution Module: a stack of grouped 3x3 convs (SiLU between them), the
    cell's locality branch. ``norms[k]`` puts a BatchNorm after conv ``k``; ``final_act`` adds a
    SiLU after the last conv (ViTAE v1). BN + SiLU run through :func:`bn_act` while training.
    ``deploy=True`` builds the folded form (each ``bn{k}`` an identity, folded into
    ``conv{k}``)."""

    memory_efficient = True

    def __init__(self, channels: Sequence[int], strides: Sequence[int], groups: int,
                 norms: Sequence[bool], final_act: bool = False, deploy: bool = False):
        layers = OrderedDict()
        n = len(strides)
        for k in range(n):
            layers[f'conv{k + 1}'] = nn.Conv2d(channels[k], channels[k + 1], 3, strides[k], 1,
                                               groups=groups)
            if norms[k]:
                layers[f'bn{k + 1}'] = nn.Identity() if deploy else \
                    nn.BatchNorm2d(channels[k + 1])
            if k < n - 1 or final_act:
                layers[f'act{k + 1}'] = nn.SiLU()
        super().__init__(layers)
        self.num_convs = n
        self.deploy = deploy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.num_convs + 1):
            x = getattr(self, f'conv{k}')(x)
            bn = getattr(self, f'bn{k}', nn.Identity())
            act = getattr(self, f'act{k}', None)
            x = bn(x) if act is None else bn_act(bn, act, x, self.memory_efficient)
        return x

    def switch_to_deploy(self) -> None:
        """Fold each ``bn{k}`` into ``conv{k}`` (the BN becomes an identity)."""
        if self.deploy:
            return
        for name, module in list(self.named_children()):
            if name.startswith('bn'):
                conv = f'conv{name[2:]}'
                setattr(self, conv, fuse_conv_bn(getattr(self, conv), module))
                setattr(self, name, nn.Identity())
        self.deploy = True


class PRM(nn.Module):
    """Pyramid Reduction Module: parallel dilated strided convs (+ GELU) whose outputs are
    concatenated along channels (dilation-major) - multi-scale context and down-sampling."""

    def __init__(self, in_channels: int, embed_dim: int, kernel_size: int, stride: int,
                 dilations: Sequence[int]):
        super().__init__()
        self.stride = stride
        self.convs = nn.ModuleList([
            nn.Conv2d(in_channels, embed_dim, kernel_size, stride,
                      padding=((kernel_size - 1) * d + 2 - stride) // 2, dilation=d)
            for d in dilations
        ])
        self.out_channels = embed_dim * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.gelu(conv(x)) for conv in self.convs], dim=1)


def check_strides(strides: Sequence[int], owner: str) -> None:
    """Reduction cells down-sample by 1, 2 or 4 (the PCM has two stride-2 slots)."""
    bad = [r for r in strides if r not in (1, 2, 4)]
    if bad:
        raise ValueError(f'{owner}: reduction strides must be 1, 2 or 4, got {list(strides)}')


def build_token_mixer(kind: str, in_dim: int, out_dim: int, num_heads: int, window_size: int,
                      qkv_bias: bool, attn_drop: float = 0., proj_drop: float = 0.,
                      v_shortcut: bool = False) -> nn.Module:
    """'window' | 'transformer' (full attention) | 'performer'."""
    if kind == 'window':
        return WindowAttention(in_dim, num_heads, window_size, out_dim=out_dim, qkv_bias=qkv_bias,
                               attn_drop=attn_drop, proj_drop=proj_drop, v_shortcut=v_shortcut)
    if kind == 'transformer':
        return MultiheadAttention(in_dim, num_heads, out_dim=out_dim, qkv_bias=qkv_bias,
                                  attn_drop=attn_drop, proj_drop=proj_drop,
                                  v_shortcut=v_shortcut)
    if kind == 'performer':
        return PerformerAttention(in_dim, out_dim, qkv_bias=qkv_bias, proj_drop=proj_drop)
    raise ValueError(f"unknown attention type {kind!r}; expected 'window', 'transformer' or "
                     "'performer'")


class ReductionCell(nn.Module):
    """Reduction cell: down-samples by ``stride`` with multi-scale context (PRM) and attention,
    in parallel with a strided PCM, then an FFN.

    ``attn_type=None`` keeps only the PRM (ViTAE's third reduction cell). Inputs of any size
    work: the map is padded right/bottom by ``max(0, r*ceil(H/r) - 1 - H)`` so that the PRM
    (which gives ``floor((H+1)/r)`` for the stride 2 and 4 and odd kernels used here) and the
    PCM (``ceil(H/r)``) agree on ``ceil(H/r)``; when they agree already nothing is padded.

    Args:
        in_channels (int): Input map channels.
        embed_dim (int): Channels of each PRM dilation branch.
        token_dim (int): Output token width.
        stride (int): Down-sampling ratio.
        kernel_size (int): PRM kernel.
        dilations (Sequence[int]): PRM dilations.
        attn_type (str | None): 'window', 'transformer', 'performer' or None.
        num_heads (int): Attention heads.
        groups (int): PCM conv groups.
        pcm_norms (Sequence[bool]): BatchNorm after each PCM conv.
        pcm_final_act (bool): SiLU after the last PCM conv.
        window_size (int): Window of 'window' attention.
        transformer_qkv_bias (bool): qkv bias of 'transformer' attention (False in ViTAEv2);
            'window' and 'performer' always have one.
        norm_eps (float): LayerNorm epsilon (1e-5 in ViTAE's reduction cells).
        drop (float): Dropout after the attention projection and in the FFN.
    """

    def __init__(self, in_channels: int, embed_dim: int, token_dim: int, stride: int,
                 kernel_size: int, dilations: Sequence[int], attn_type: Optional[str],
                 num_heads: int = 1, groups: int = 1,
                 pcm_norms: Sequence[bool] = (True, True, False), pcm_final_act: bool = False,
                 window_size: int = 7, transformer_qkv_bias: bool = False,
                 norm_eps: float = 1e-5, drop: float = 0., deploy: bool = False):
        super().__init__()
        self.stride = stride
        self.prm = PRM(in_channels, embed_dim, kernel_size, stride, dilations)
        self.attn_type = attn_type
        if attn_type is None:
            return
        dim = self.prm.out_channels
        strides, res = [], stride // 2
        for _ in range(3):
            strides.append(2 if res > 0 else 1)
            res //= 2
        self.pcm = PCM([in_channels, embed_dim, embed_dim, token_dim], strides, groups,
                       pcm_norms, pcm_final_act, deploy=deploy)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        # window attention needs no v-shortcut; full/performer attention add v (dim != token_dim)
        self.attn = build_token_mixer(
            attn_type, dim, token_dim, num_heads, window_size,
            qkv_bias=transformer_qkv_bias if attn_type == 'transformer' else True,
            proj_drop=drop, v_shortcut=attn_type == 'transformer')
        self.norm2 = nn.LayerNorm(token_dim, eps=norm_eps)
        self.ffn = Mlp(token_dim, token_dim, drop=drop)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(N, C, H, W) map -> (N, L, token_dim) tokens and their (H', W')."""
        h, w = x.shape[-2:]
        r = self.stride
        if sizes_are_symbolic():
            # recorded sizes (torch.compile, torch.export, ONNX, jit traces): no branch on
            # them. Zeros up to a multiple of r, one row more than below where r does not
            # divide H: that row stands where the convs' own zero padding is, so the outputs
            # are the same, and the padded size stays r * ceil(H / r) for the shape analysis
            # of every later layer (see pad_to_multiple)
            x = F.pad(x, (0, pad_to_multiple(w, r), 0, pad_to_multiple(h, r)))
        else:
            # as the official code where it accepts the size (H % r in {0, r - 1}), else
            # padded bottom/right to r * ceil(H / r) - 1; every conv puts out ceil(H / r)
            pad_h, pad_w = max(0, pad_to_multiple(h, r) - 1), max(0, pad_to_multiple(w, r) - 1)
            if pad_h > 0 or pad_w > 0:
                x = F.pad(x, (0, pad_w, 0, pad_h))
        t = self.prm(x)
        hw = tuple(t.shape[-2:])
        t = nchw_to_nlc(t)
        if self.attn_type is None:
            return t, hw
        y = self.attn(self.norm1(t), hw) + nchw_to_nlc(self.pcm(x))
        y = y + self.ffn(self.norm2(y))
        return y, hw


class NormalCell(nn.Module):
    """Normal cell: attention in parallel with a PCM on the un-normalised tokens, then an FFN;
    both residual with stochastic depth.

    With ``num_prefix_tokens=1`` (a class token in front) the PCM sees only the patch tokens.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., attn_type: str = 'transformer',
                 window_size: int = 7, groups: int = 1, qkv_bias: bool = True,
                 pcm_layout: str = 'v2', drop: float = 0., attn_drop: float = 0.,
                 drop_path: float = 0., norm_eps: float = 1e-6, num_prefix_tokens: int = 0,
                 deploy: bool = False):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = build_token_mixer(attn_type, dim, dim, num_heads, window_size, qkv_bias,
                                      attn_drop=attn_drop, proj_drop=drop)
        if pcm_layout == 'shallow':  # ViTAE-B/L/H: two convs
            self.pcm = PCM([dim, hidden, dim], [1, 1], groups, (True, False), deploy=deploy)
        elif pcm_layout in ('v1', 'v2'):  # three convs; v1 ends with a SiLU
            self.pcm = PCM([dim, hidden, dim, dim], [1, 1, 1], groups, (True, True, False),
                           final_act=pcm_layout == 'v1', deploy=deploy)
        else:
            raise ValueError(f"pcm_layout must be 'v1', 'v2' or 'shallow', got {pcm_layout!r}")
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.ffn = Mlp(dim, hidden, drop=drop)
        self.drop_path = DropPath(drop_path)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        p = self.num_prefix_tokens
        conv = nchw_to_nlc(self.pcm(nlc_to_nchw(x[:, p:], hw_shape)))
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        if p:
            x = torch.cat([x[:, :p], x[:, p:] + self.drop_path(conv)], dim=1)
        else:
            x = x + self.drop_path(conv)
        return x + self.drop_path(self.ffn(self.norm2(x)))


class PatchEmbedReduction(nn.Module):
    """Reduction by a non-overlapping patch embedding plus a class token and learned position
    embedding (the ViT-style ViTAE-B/L/H of ViTAE §3.3). Inputs of any size: the map is padded
    right/bottom to a multiple of the patch, and the position table is resized bicubically when
    the grid differs from the one it was built for."""

    num_prefix_tokens = 1

    def __init__(self, in_channels: int, dim: int, patch_size: int = 16, img_size: int = 224):
        super().__init__()
        self.stride = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.cls_token, std=.02)
        nn.init.trunc_normal_(self.pos_embed, std=.02)

    def resized_pos_embed(self, hw: Tuple[int, int]) -> torch.Tensor:
        if not sizes_are_symbolic() and tuple(hw) == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = nlc_to_nchw(patch_pos, self.grid)
        patch_pos = F.interpolate(patch_pos, size=hw, mode='bicubic', align_corners=False)
        return torch.cat([cls_pos, nchw_to_nlc(patch_pos)], dim=1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        h, w = x.shape[-2:]
        p = self.stride
        x = F.pad(x, (0, pad_to_multiple(w, p), 0, pad_to_multiple(h, p)))
        x = self.proj(x)
        hw = tuple(x.shape[-2:])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), nchw_to_nlc(x)], dim=1)
        return x + self.resized_pos_embed(hw), hw


class ViTAEStage(nn.Module):
    """One ViTAE stage: a reduction cell (``reduction``) followed by normal cells (``blocks``).
    Map in; tokens (prefix tokens first, if any) and their spatial shape out."""

    def __init__(self, reduction: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.reduction = reduction
        self.blocks = nn.ModuleList(blocks)
        self.num_prefix_tokens = getattr(reduction, 'num_prefix_tokens', 0)

    def forward(self, x: torch.Tensor, with_cp: bool = False
                ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        x, hw = self.reduction(x)
        for block in self.blocks:
            x = maybe_checkpoint(block, x, hw, enabled=with_cp)
        return x, hw
