"""CPU kernels the runtime may choose: oneDNN's convolution on pre-packed weights (a linear
layer as a 1x1 convolution, with an exact GELU fused), a channel-reducing grouped convolution
in its transposed form, and attention as two grouped 1x1 convolutions.

Each computes exactly what the standard op computes (a different summation order only). Whether
one is faster depends on the CPU: :class:`mmhiri.runtime.choice.MeasuredChoice` decides. Nothing
here runs at import: the oneDNN ops are probed on first use.
"""
import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=None)
def onednn_conv_ops() -> Optional[Tuple]:
    """``(reorder, conv)``: oneDNN's weight reordering and its convolution on reordered weights
    with an optional fused exact GELU (the ops inductor's CPU weight pre-packing emits), if this
    torch build has them and they compute what ``F.conv2d`` (+ ``F.gelu``) computes; else None.
    Probed once, on first use."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        reorder = torch.ops.mkldnn._reorder_convolution_weight
        conv = torch.ops.mkldnn._convolution_pointwise
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 5, 6, generator=g).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, generator=g)
        with torch.no_grad():
            packed = reorder(w, [1, 1], [1, 1], [1, 1], 2, list(x.shape))
            want = F.conv2d(x, w, b, 1, 1, 1, 2)
            plain = conv(x, packed, b, [1, 1], [1, 1], [1, 1], 2, 'none', [], '')
            gelu = conv(x, packed, b, [1, 1], [1, 1], [1, 1], 2, 'gelu', [], 'none')
        if torch.allclose(plain, want, atol=1e-5) and torch.allclose(gelu, F.gelu(want),
                                                                     atol=1e-5):
            return reorder, conv
    except (AttributeError, RuntimeError, TypeError):
        pass
    return None


def packed_conv(x: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor],
                padding, stride, dilation, groups: int, gelu: bool = False) -> torch.Tensor:
    """oneDNN's convolution on weights ``packed`` by :func:`pack_conv_weight` for ``x``'s size."""
    conv = onednn_conv_ops()[1]
    return conv(x, packed, bias, list(padding), list(stride), list(dilation), groups,
                *(('gelu', [], 'none') if gelu else ('none', [], '')))


def pack_conv_weight(weight: torch.Tensor, padding, stride, dilation, groups: int,
                     input_size) -> torch.Tensor:
    """``weight`` reordered into oneDNN's layout for inputs of ``input_size``."""
    reorder = onednn_conv_ops()[0]
    return reorder(weight, list(padding), list(stride), list(dilation), groups,
                   list(input_size))


def transposed_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """For a grouped, stride-1, 'same'-padded convolution: ``conv2d(x, W)`` equals
    ``conv_transpose2d(x, W')``, ``W'`` being ``W`` flipped spatially with its per-group input
    and output channels swapped. Returns ``W'`` (in_channels, out_channels / groups, kh, kw).
    oneDNN's channels-last kernels pad a group's output channels to a block of 16, so a conv
    with few outputs per group (ViTAEv2's PCMs: 4) can run faster in this form."""
    co_all, ci, kh, kw = weight.shape
    co = co_all // groups
    w_t = weight.flip(-1, -2).reshape(groups, co, ci, kh, kw).transpose(1, 2)
    return w_t.reshape(groups * ci, co, kh, kw).contiguous()


def onednn_attention(qkv: torch.Tensor, scale: float, block_bytes: int) -> torch.Tensor:
    """softmax(q k^T * scale) v of every head, through two grouped 1x1 convolutions.

    ``qkv`` is (B, L, 3, heads, d); returns (B, L, heads * d). The scores of a block of
    queries are a 1x1 convolution whose weights are the scaled keys (one group per batch row
    and head), the context a second one whose weights are the values; at most ``block_bytes``
    of attention weights exist at once.
    """
    b, n, _, heads, d = qkv.shape
    groups = b * heads
    q, k, v = qkv.unbind(2)  # (B, L, heads, d) views
    # keys as weights (B*heads*L, d, 1, 1), values as weights (B*heads*d, L, 1, 1)
    w_k = (k.transpose(1, 2) * scale).reshape(groups * n, d, 1, 1)
    w_v = v.permute(0, 2, 3, 1).reshape(groups * d, n, 1, 1)
    # queries as a channels-last (1, B*heads*d, L, 1) map: memory (L, B, heads, d)
    q_map = q.transpose(0, 1).reshape(1, n, 1, groups * d).permute(0, 3, 1, 2)
    blocks = -(-(qkv.element_size() * groups * n * n) // block_bytes)
    rows = -(-n // blocks)
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
