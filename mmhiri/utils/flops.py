"""FLOP counting: mmengine's FlopAnalyzer (fvcore rules) plus the fused attention kernel."""
from typing import Any, List

import torch


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::scaled_dot_product_attention``: the multiply-adds of its two products,
    ``q @ k^T`` (L x S x E per batch and head) and ``attn @ v`` (L x S x Ev) - what the explicit
    ``matmul`` pair counts."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    *batch, length, dim = q
    source, dim_v = k[-2], v[-1]
    n = 1
    for b in batch:
        n *= b
    return n * length * source * (dim + dim_v)


def flop_analyzer(model: torch.nn.Module, inputs):
    """A quiet FlopAnalyzer that also counts fused attention (1 multiply-add = 1 FLOP)."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer
