"""Mixed-precision training where mmengine's ``AmpOptimWrapper`` cannot run: on CPU.

``tools/train.py --amp`` picks, through :func:`amp_optim_wrapper`:

* CUDA: mmengine's ``AmpOptimWrapper`` - fp16 with dynamic loss scaling by default, or bf16
  (``--amp-dtype bf16``);
* CPU: :class:`CPUAutocastOptimWrapper` - the step under ``torch.autocast('cpu',
  dtype=torch.bfloat16)``. bf16 keeps fp32's exponent range, so no loss scaling is needed (and
  fp16, which would need it, is refused on CPU). Parameters, gradients and the optimizer state
  stay fp32; its state dict is the plain optimizer's, so a run resumes with or without it.

Some ops the frameworks call inside the step have no bf16 CPU kernel: mmcv 2.1.0's CPU ``nms``
and ``roi_align`` take fp32 only, and mmpose's ``to_numpy`` (its heads' accuracy) cannot
convert bf16 (numpy has no bf16). :func:`install_cpu_autocast_fallbacks` - run when a CPU
autocast wrapper is built, or ``tools/test.py --amp`` runs on CPU - gives them fp32 inputs
(bf16 CPU tensors only; every other call is untouched), as their CUDA kernels accept half
precision by themselves.
"""
import functools
import sys
from contextlib import contextmanager
from typing import Callable, Optional

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward and loss run under CPU autocast in ``dtype``.

    Args:
        dtype (str): ``'bfloat16'`` (the only CPU dtype that needs no loss scaling).
            Defaults to ``'bfloat16'``.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAutocastOptimWrapper: dtype must be bfloat16 on CPU (fp16 '
                             f'needs loss scaling, which is for GPUs), got {dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16
        install_cpu_autocast_fallbacks()

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def amp_optim_wrapper(optim_wrapper: dict, dtype: Optional[str], cuda: bool) -> dict:
    """The ``optim_wrapper`` config for ``--amp``: ``dtype`` is ``'fp16'``, ``'bf16'`` or
    None (fp16 on CUDA, bf16 on CPU). Only a plain ``OptimWrapper`` (or an already mixed one)
    can be switched; raises ``ValueError`` naming the type otherwise."""
    kind = optim_wrapper.get('type', 'OptimWrapper')
    kind = kind.split('.')[-1] if isinstance(kind, str) else getattr(kind, '__name__', kind)
    if kind not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAutocastOptimWrapper'):
        raise ValueError(f'--amp: the config uses optim_wrapper type {kind!r}; only '
                         'OptimWrapper (or AmpOptimWrapper) can be switched to mixed precision')
    if dtype is not None and dtype not in AMP_DTYPES:
        raise ValueError(f'--amp-dtype must be one of {sorted(AMP_DTYPES)}, got {dtype!r}')
    cfg = {k: v for k, v in optim_wrapper.items() if k not in ('type', 'loss_scale', 'dtype')}
    if cuda:
        dtype = dtype or 'fp16'
        cfg.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[dtype],
                   loss_scale=optim_wrapper.get('loss_scale', 'dynamic'))
    else:
        dtype = dtype or 'bf16'
        if dtype != 'bf16':
            raise ValueError('--amp on CPU trains in bf16 (fp16 needs loss scaling on a GPU); '
                             'use --amp-dtype bf16 or run on a GPU')
        cfg.update(type='CPUAutocastOptimWrapper', dtype=AMP_DTYPES[dtype])
    return cfg


def _bf16_cpu(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 and t.device.type == 'cpu'


def _fp32_inputs(fn: Callable, restore: bool = True) -> Callable:
    """``fn`` with its bf16 CPU tensor arguments cast to fp32; with ``restore``, its fp32
    tensor outputs cast back to bf16 (what the CUDA kernels return for half inputs, so that
    callers mixing them with other half tensors keep working; autograd casts gradients)."""
    if getattr(fn, '_mmhiri_fp32_inputs', False):
        return fn

    def back(out):
        if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
            return out.to(torch.bfloat16)
        if isinstance(out, (list, tuple)):
            return type(out)(back(o) for o in out)
        return out

    def cast(a):
        if _bf16_cpu(a):
            return a.float()
        if isinstance(a, (list, tuple)) and any(_bf16_cpu(t) for t in a):
            return type(a)(t.float() if _bf16_cpu(t) else t for t in a)
        return a

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        new_args = [cast(a) for a in args]
        new_kwargs = {k: cast(v) for k, v in kwargs.items()}
        cast_any = any(a is not b for a, b in zip(new_args, args)) or \
            any(new_kwargs[k] is not kwargs[k] for k in kwargs)
        out = fn(*new_args, **new_kwargs)
        return back(out) if cast_any and restore else out

    wrapper._mmhiri_fp32_inputs = True
    return wrapper


def _replace_everywhere(original: Callable, new: Callable, prefixes) -> None:
    """Point every loaded module of ``prefixes`` that holds ``original`` at ``new`` (modules
    that imported the function by name keep their own reference)."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, new)


_FALLBACKS_INSTALLED = False


def install_cpu_autocast_fallbacks() -> None:
    """fp32 inputs for the CPU ops without a bf16 kernel (mmcv's ``nms`` and ``roi_align``,
    mmpose's ``to_numpy``), where those packages are installed. Idempotent."""
    global _FALLBACKS_INSTALLED
    if _FALLBACKS_INSTALLED:
        return
    prefixes = ('mmcv', 'mmdet', 'mmseg', 'mmpose', 'mmpretrain', 'mmhiri')
    import importlib
    for module_name, fn_name in (('mmcv.ops.nms', 'nms'), ('mmcv.ops.roi_align', 'roi_align'),
                                 ('mmpose.utils.tensor_utils', 'to_numpy')):
        restore = fn_name != 'to_numpy'  # (numpy out)
        try:
            importlib.import_module(module_name.rsplit('.', 1)[0])
            module = sys.modules.get(module_name) or importlib.import_module(module_name)
        except ImportError:
            continue
        original = getattr(module, fn_name, None)
        if callable(original):
            _replace_everywhere(original, _fp32_inputs(original, restore), prefixes)
    _FALLBACKS_INSTALLED = True


def to_fp32(obj):
    """``obj`` with every bf16 tensor in it as fp32: tensors, lists, tuples, dicts and
    mmengine data elements (``DetDataSample``, ``InstanceData``, ...), in place for the latter.
    The frameworks' metrics turn predictions into numpy arrays, which have no bf16."""
    from mmengine.structures import BaseDataElement
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype == torch.bfloat16 else obj
    if isinstance(obj, BaseDataElement):
        for key, value in list(obj.items()):
            setattr(obj, key, to_fp32(value))
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_fp32(o) for o in obj)
    if isinstance(obj, dict):
        return {k: to_fp32(v) for k, v in obj.items()}
    return obj
