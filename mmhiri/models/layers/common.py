"""Small helpers shared by every block: token/map reshapes, padding, drop path, checkpointing."""
import math
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp


def _token_grid(x: torch.Tensor, hw_shape: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(N, H, W, C) of (N, H*W, C) tokens on an H x W grid; one clear error if they are not."""
    h, w = hw_shape
    n, length, c = x.shape
    if not torch.jit.is_tracing() and length != h * w:  # (traced sizes are tensors)
        raise ValueError(f'{length} tokens do not form a {h}x{w} map')
    return n, h, w, c


def nlc_to_nhwc(x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
    """(N, H*W, C) tokens -> (N, H, W, C) (a view where the tokens allow one)."""
    return x.reshape(*_token_grid(x, hw_shape))


def nlc_to_nchw(x: torch.Tensor, hw_shape: Tuple[int, int]) -> torch.Tensor:
    """(N, H*W, C) tokens -> (N, C, H, W) map."""
    n, h, w, c = _token_grid(x, hw_shape)
    return x.transpose(1, 2).reshape(n, c, h, w)


def nchw_to_nlc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) map -> (N, H*W, C) tokens."""
    return x.flatten(2).transpose(1, 2)


def sizes_are_symbolic() -> bool:
    """True while sizes are recorded rather than known: ``torch.compile`` / ``torch.export``
    (symbolic sizes) and ``torch.jit.trace`` (the legacy ONNX exporter, ``openvino.convert_model``,
    FLOP counters). The graph must then compute every size-dependent amount, never branch on
    it in Python, so that it holds at every input size."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0, without a negative operand: exported graphs (ONNX)
    divide and take remainders of negative integers differently from Python."""
    return (a + b - 1) // b


def pad_to_multiple(n: int, m: int) -> int:
    """How much to add to ``n`` (>= 0) to reach a multiple of ``m``: ``(-n) % m``, written as
    ``m * ceil_div(n, m) - n`` (no negative operand, see :func:`ceil_div`). For a symbolic
    ``n`` the padded size ``n + pad`` is then plainly ``m * ceil_div(n, m)``, which torch.export
    carries through later layers; a remainder form leaves it a nest of remainders that every
    later size check re-analyses (minutes per export of a four-stage model)."""
    return m * ceil_div(n, m) - n


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> List[List[float]]:
    """The usual stochastic-depth schedule: linear in the global block index, split per stage."""
    total = sum(depths)
    rates = [drop_path_rate * i / (total - 1) if total > 1 else 0. for i in range(total)]
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p``."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        shape = (x.shape[0], ) + (1, ) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class _KeepRunningStats:
    """Inside: whatever runs, the BatchNorms of ``module`` end with the running statistics
    (and batch counters) they had on entry. The code path itself is untouched, so a
    checkpoint's recomputation saves exactly what its forward saved."""

    def __init__(self, module):
        self.bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and m.track_running_stats] if isinstance(module, nn.Module) else []

    def __enter__(self):
        self.saved = [(bn.running_mean.clone(), bn.running_var.clone(),
                       bn.num_batches_tracked.clone()) for bn in self.bns]

    def __exit__(self, *exc):
        with torch.no_grad():
            for bn, (mean, var, count) in zip(self.bns, self.saved):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(count)


def maybe_checkpoint(fn: Callable, x: torch.Tensor, *args, enabled: bool = False):
    """Run ``fn(x, *args)``, with activation checkpointing when ``enabled`` and grads flow.

    The recomputation in backward must not update BatchNorm running statistics a second time
    (it would, as a plain re-run of a training-mode forward): it runs with them frozen.
    """
    if enabled and x.requires_grad:
        calls = []

        def run(*inputs):
            if not calls:  # the forward pass
                calls.append(1)
                return fn(*inputs)
            with _KeepRunningStats(fn):  # the recomputation in backward
                return fn(*inputs)

        return cp.checkpoint(run, x, *args, use_reentrant=False)
    return fn(x, *args)


def _bn_act(x: torch.Tensor, weight, bias, eps: float, act: nn.Module) -> torch.Tensor:
    return act(F.batch_norm(x, None, None, weight, bias, True, 0., eps))


def bn_act(bn: nn.Module, act: nn.Module, x: torch.Tensor, recompute: bool = True
           ) -> torch.Tensor:
    """``act(bn(x))``, keeping only ``x`` for backward while a plain BatchNorm trains.

    Stock autograd keeps both the BN's input and its output (the activation's input); here the
    normalised map is recomputed from ``x`` in backward instead (the saving of in-place
    activated BN: one full-size map less per BN + activation, a cheap element-wise pass more).
    Outputs, gradients and running statistics are those of ``act(bn(x))``. Other norms
    (SyncBatchNorm, frozen or eval-mode BN) and ``recompute=False`` run as they are.
    """
    if not (recompute and type(bn) is nn.BatchNorm2d and bn.training and bn.track_running_stats
            and torch.is_grad_enabled() and x.requires_grad):
        return act(bn(x))
    with torch.no_grad():  # the running-statistics update of bn(x), exactly as bn does it
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else \
            1. / float(bn.num_batches_tracked)
        F.batch_norm(x, bn.running_mean, bn.running_var, None, None, True, momentum, bn.eps)
    return cp.checkpoint(_bn_act, x, bn.weight, bn.bias, bn.eps, act, use_reentrant=False)


def build_act(act: str) -> nn.Module:
    acts = {'gelu': nn.GELU, 'relu': nn.ReLU, 'silu': nn.SiLU, 'identity': nn.Identity}
    if act.lower() not in acts:
        raise ValueError(f'unknown activation {act!r}; expected one of {sorted(acts)}')
    return acts[act.lower()]()


def trunc_normal_init_(module: nn.Module, std: float = .02, conv_fan_out: bool = True) -> None:
    """ViT-style init: truncated-normal Linear weights, zero biases, unit norms; convs get
    fan-out normal init (or keep PyTorch's default with ``conv_fan_out=False``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d) and conv_fan_out:
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
