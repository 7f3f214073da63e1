"""Token mixers on (N, L, C) tokens: full multi-head attention, window attention and Performer
attention. Each exists once and serves HIRI-ViT, ViTAE and ViTAEv2."""
import math
import os
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ceil_div, nlc_to_nhwc, pad_to_multiple
from .fusion import concrete_cpu_input

# Deploy mode on CPU: rows of fewer tokens run the explicit product (the attention matrices
# are small; BLAS beat the fused kernel on 7x7 windows), longer rows the oneDNN product;
# the oneDNN product materialises at most this many bytes of attention weights at a time:
# 64 MiB when glibc keeps freed memory (MALLOC_MMAP_MAX_=0, docs/speed.md), else 16 MiB, under
# glibc's largest mmap threshold (32 MiB), so that the blocks are reused, not mapped and
# unmapped on every call (at 896x896 that was the faster choice for each setting).
EXPLICIT_BELOW_TOKENS = 64
ONEDNN_ATTN_CHUNK_BYTES = 64 << 20 if os.environ.get('MALLOC_MMAP_MAX_') == '0' else 16 << 20


def onednn_attention(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v of every head, through two grouped 1x1 convolutions.

    ``qkv`` is (B, L, 3, heads, d); returns (B, L, heads * d). The scores of a block of
    queries are a 1x1 convolution whose weights are the scaled keys (one group per batch row
    and head), the context a second one whose weights are the values: on CPU this runs in
    oneDNN, which was faster than the fused kernel's and BLAS's products on long rows on the
    benchmark machine (``docs/speed.md``). Exact fp32 arithmetic (a different
    summation order only); at most ``ONEDNN_ATTN_CHUNK_BYTES`` of weights exist at once.
    """
    b, n, _, heads, d = qkv.shape
    groups = b * heads
    q, k, v = qkv.unbind(2)  # (B, L, heads, d) views
    # keys as weights (B*heads*L, d, 1, 1), values as weights (B*heads*d, L, 1, 1)
    w_k = (k.transpose(1, 2) * scale).reshape(groups * n, d, 1, 1)
    w_v = v.permute(0, 2, 3, 1).reshape(groups * d, n, 1, 1)
    # queries as a channels-last (1, B*heads*d, L, 1) map: memory (L, B, heads, d)
    q_map = q.transpose(0, 1).reshape(1, n, 1, groups * d).permute(0, 3, 1, 2)
    blocks = ceil_div(qkv.element_size() * groups * n * n, ONEDNN_ATTN_CHUNK_BYTES)
    rows = ceil_div(n, blocks)
    outs = []
    for start in range(0, n, rows):
        q_blk = q_map[:, :, start:start + rows]
        m = q_blk.shape[2]
        scores = F.conv2d(q_blk, w_k, groups=groups)  # (1, groups*L, m, 1), memory (m, groups, L)
        weights = scores.permute(0, 2, 3, 1).reshape(m, groups, n).softmax(dim=-1)
        weights = weights.reshape(1, m, 1, groups * n).permute(0, 3, 1, 2)
        ctx = F.conv2d(weights, w_v, groups=groups)  # (1, groups*d, m, 1), memory (m, B, heads, d)
        outs.append(ctx.permute(0, 2, 3, 1).reshape(m, b, heads * d))
    ctx = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
    return ctx.transpose(0, 1)


class MultiheadAttention(nn.Module):
    """Full multi-head self-attention over all tokens (HIRI-ViT Eq. 1; ViTAE's global attention).

    Args:
        in_dim (int): Input token width.
        num_heads (int): Heads; they split ``out_dim``.
        out_dim (int, optional): Width of q, k, v and the output. Defaults to ``in_dim``.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        qk_scale (float, optional): Overrides ``head_dim ** -0.5``.
        attn_drop (float): Dropout on the attention weights.
        proj_drop (float): Dropout after the output projection.
        v_shortcut (bool): Add ``v`` (heads merged) to the output: the skip a reduction cell
            needs when ``in_dim != out_dim``. Defaults to False.
        fused_attn (bool): Compute softmax(q k^T * scale) v with
            ``F.scaled_dot_product_attention`` (no attention matrix is materialised or kept for
            backward); False runs the explicit product. Same parameters, same outputs up to
            float reordering. Defaults to True.
    """

    def __init__(self, in_dim: int, num_heads: int, out_dim: Optional[int] = None,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0., proj_drop: float = 0., v_shortcut: bool = False,
                 fused_attn: bool = True):
        super().__init__()
        out_dim = out_dim or in_dim
        if out_dim % num_heads:
            raise ValueError(f'attention width {out_dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.out_dim = out_dim
        self.scale = qk_scale or (out_dim // num_heads)**-0.5
        self.v_shortcut = v_shortcut
        self.fused_attn = fused_attn
        self.deploy = False
        self.qkv = nn.Linear(in_dim, out_dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Attention among the tokens of each row of ``x`` (B, L, in_dim) -> (B, L, out_dim),
        including ``proj`` (and the ``v`` shortcut when enabled)."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.out_dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        product = self.product(qkv)
        if product == 'onednn':
            ctx = onednn_attention(qkv, self.scale)
        elif product == 'fused':
            ctx = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0., scale=self.scale)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            ctx = self.attn_drop(attn.softmax(dim=-1)) @ v
        if product != 'onednn':
            ctx = ctx.transpose(1, 2).reshape(b, n, self.out_dim)
        out = self.proj_drop(self.proj(ctx))
        if self.v_shortcut:
            out = v.transpose(1, 2).reshape(b, n, self.out_dim) + out
        return out

    def product(self, qkv: torch.Tensor) -> str:
        """'fused', 'explicit' or, in deploy mode on CPU, 'onednn' (see the module constants).
        The deploy choice holds for float32 inputs in eager mode; compiled, traced and exported
        graphs keep the fused kernel (inductor's own attention kernel was the faster one under
        ``torch.compile`` on the benchmark machine)."""
        if not self.fused_attn:
            return 'explicit'
        if not self.deploy or not concrete_cpu_input(qkv, torch.float32) or \
                torch.compiler.is_compiling():
            return 'fused'
        return 'explicit' if qkv.shape[1] < EXPLICIT_BELOW_TOKENS else 'onednn'

    def switch_to_deploy(self) -> None:
        """Inference on CPU: short rows (windows) through the explicit product, long rows
        through :func:`onednn_attention`; other devices keep the fused kernel."""
        self.deploy = True

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        return self.attend(x)


class WindowAttention(MultiheadAttention):
    """Multi-head attention inside non-overlapping ``window_size`` x ``window_size`` windows.

    Maps whose sides are not multiples of the window are zero-padded (after the pre-norm, as
    the tokens arrive) with ``pad // 2`` before and the rest after, then cropped back. Padded
    tokens take part as keys; there is no shift, mask or relative position bias (ViTAEv2's
    window attention).
    """

    def __init__(self, in_dim: int, num_heads: int, window_size: int = 7, **kwargs):
        super().__init__(in_dim, num_heads, **kwargs)
        self.window_size = window_size

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
        h, w = hw_shape
        ws = self.window_size
        x = nlc_to_nhwc(x, hw_shape)
        b, c = x.shape[0], x.shape[-1]
        pad_h, pad_w = pad_to_multiple(h, ws), pad_to_multiple(w, ws)
        top, left = pad_h // 2, pad_w // 2
        # partition and reverse in the tokens' own (B, H, W, C) layout: one copy each way (an
        # NCHW route costs a layout change more; outputs are bit-identical). No branch on
        # symbolic sizes when compiling or exporting.
        padded = torch.compiler.is_compiling() or pad_h > 0 or pad_w > 0
        if padded:
            x = F.pad(x, (0, 0, left, pad_w - left, top, pad_h - top))
        hp, wp = h + pad_h, w + pad_w
        nh, nw = hp // ws, wp // ws
        # (B, nh*ws, nw*ws, C) -> (B*nh*nw, ws*ws, C): windows raster-ordered, tokens raster
        # inside a window
        windows = x.reshape(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(
            b * nh * nw, ws * ws, c)
        out = self.attend(windows)
        c_out = out.shape[-1]
        out = out.reshape(b, nh, nw, ws, ws, c_out).permute(0, 1, 3, 2, 4, 5).reshape(
            b, hp, wp, c_out)
        if padded:
            out = out[:, top:top + h, left:left + w]
        return out.reshape(b, h * w, c_out)


class PerformerAttention(nn.Module):
    """Single-head Performer attention with positive random features (ViTAE's reduction cells):
    linear in the number of tokens, with a ``v`` shortcut.

    ``phi(z) = exp(z @ w.T - |z|^2 / 2) / sqrt(m)`` with ``m = out_dim * kernel_ratio`` fixed
    orthogonal random features ``w`` (a buffer: saved, loaded, never trained); the kqv
    projection is split in the order k, q, v.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_ratio: float = 0.5,
                 qkv_bias: bool = True, proj_drop: float = 0., eps: float = 1e-8):
        super().__init__()
        self.out_dim = out_dim
        self.eps = eps
        self.num_features = int(out_dim * kernel_ratio)
        self.kqv = nn.Linear(in_dim, 3 * out_dim, bias=qkv_bias)
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        w = torch.empty(self.num_features, out_dim)
        nn.init.orthogonal_(w)
        self.register_buffer('w', w * math.sqrt(self.num_features))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        sq_norm = (x * x).sum(dim=-1, keepdim=True) / 2
        return torch.exp(x @ self.w.t() - sq_norm) / math.sqrt(self.num_features)

    def forward(self, x: torch.Tensor, hw_shape: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        k, q, v = self.kqv(x).split(self.out_dim, dim=-1)
        kp, qp = self.feature_map(k), self.feature_map(q)  # (B, L, m)
        denom = (qp @ kp.sum(dim=1).unsqueeze(-1))  # (B, L, 1)
        kptv = v.transpose(1, 2) @ kp  # (B, out_dim, m)
        y = (qp @ kptv.transpose(1, 2)) / (denom + self.eps)
        return v + self.proj_drop(self.proj(y))
