"""CPU inference engines: a backbone (+ neck) exported to ONNX and run by ONNX Runtime or
OpenVINO, in fp32 or (OpenVINO) bf16, as a module inside the PyTorch model.

    engine = build_engine(backbone_and_neck, 'openvino', precision='bf16', work_dir='out')
    model.backbone, model.neck = engine, None      # heads stay in PyTorch

The exported graph is the folded model (:meth:`switch_to_deploy`), traced once with dynamic
height and width (``torch.onnx.export(..., dynamo=True)``) and optimised by onnxscript without
its no-op rules (:func:`optimize_keeping_small_constants`). OpenVINO reads that ONNX file and
compiles one model per input size it meets (static shapes were the fast ones here; a few
sizes at most in a test set of resized, padded images), ONNX Runtime runs the dynamic graph.
Both need ``requirements/deploy.txt``.
"""
import os
import os.path as osp
import time
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

ENGINES = ('onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16')


class BackboneNeck(nn.Module):
    """backbone -> neck (as a detector's ``extract_feat``); ``neck=None`` is the backbone."""

    def __init__(self, backbone: nn.Module, neck: Optional[nn.Module] = None):
        super().__init__()
        self.backbone, self.neck = backbone, neck

    def forward(self, x):
        out = self.backbone(x)
        return tuple(self.neck(out)) if self.neck is not None else tuple(out)


def optimize_keeping_small_constants(program) -> bool:
    """onnxscript's graph optimiser (constant folding, fusions: what ``torch.onnx.export``
    runs by default) without its arithmetic no-op rules. Those drop ``x + c`` for any scalar
    ``c`` within 1e-8 of zero, i.e. the Performer attention's ``denominator + 1e-8`` (ViTAE),
    whose denominators reach 1e-6 (1e-3 output error). Returns False, leaving the graph as
    exported (correct, slower in onnxruntime), if this onnxscript lays its rules out
    differently."""
    try:
        from onnxscript import rewriter
        from onnxscript.rewriter.rules.common import _no_op
        default = rewriter._DEFAULT_REWRITE_RULES
    except (ImportError, AttributeError):
        return False
    no_ops = set(map(id, _no_op.rules.rules))
    rewriter._DEFAULT_REWRITE_RULES = tuple(r for r in default if id(r) not in no_ops)
    try:
        program.optimize()
    finally:
        rewriter._DEFAULT_REWRITE_RULES = default
    return True


MIN_SIDE = 32  # the exported graph's smallest input side (torch.export's Dim bounds)
MAX_SIDE = 8192


def export_onnx(module: nn.Module, path: str, shape: Tuple[int, int] = (448, 448),
                dynamic: bool = True) -> float:
    """Export ``module`` (eval mode) to ``path`` with ``torch.onnx.export(dynamo=True)`` at
    a ``1 x 3 x H x W`` input, H and W dynamic in [32, 8192] unless ``dynamic=False``.
    Returns the seconds taken."""
    x = torch.rand(1, 3, *shape)
    kwargs = {}
    if dynamic:
        h = torch.export.Dim('height', min=MIN_SIDE, max=MAX_SIDE)
        w = torch.export.Dim('width', min=MIN_SIDE, max=MAX_SIDE)
        kwargs['dynamic_shapes'] = {'x': {2: h, 3: w}}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        program = torch.onnx.export(module, (x, ), dynamo=True, verbose=False, optimize=False,
                                    **kwargs)
    optimize_keeping_small_constants(program)
    program.save(path)
    return time.perf_counter() - t0


def _need(package: str):
    import importlib
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise RuntimeError(f'the {package} engine needs requirements/deploy.txt installed '
                           f'({e})') from None


class OnnxRuntimeEngine(nn.Module):
    """An ONNX file run by ONNX Runtime's CPU provider (fp32); outputs as torch tensors."""

    def __init__(self, onnx_path: str, threads: Optional[int] = None):
        super().__init__()
        ort = _need('onnxruntime')
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(onnx_path, opts,
                                            providers=['CPUExecutionProvider'])
        self.input_name = self.session.get_inputs()[0].name
        self.precision = 'fp32'

    def run_one(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = self.session.run(None, {self.input_name: _numpy(x)})
        return tuple(torch.from_numpy(o).to(x.device) for o in outs)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return _per_image(self.run_one, x)


class OpenVINOEngine(nn.Module):
    """An ONNX file read by OpenVINO and compiled for the CPU, one compiled model per input
    size (kept for the ``cache_size`` most recent sizes), with ``precision`` ``'fp32'`` or
    ``'bf16'`` (OpenVINO's inference precision hint; bf16 runs where the CPU has bf16
    instructions and keeps fp32 where OpenVINO deems it needed)."""

    def __init__(self, onnx_path: str, precision: str = 'fp32', threads: Optional[int] = None,
                 cache_size: int = 8):
        super().__init__()
        ov = _need('openvino')
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        self.core = ov.Core()
        self.model = self.core.read_model(onnx_path)
        self.config = {'INFERENCE_PRECISION_HINT': 'bf16' if precision == 'bf16' else 'f32',
                       'PERFORMANCE_HINT': 'LATENCY'}
        if threads:
            self.config['INFERENCE_NUM_THREADS'] = int(threads)
        self.precision = precision
        self.cache_size = cache_size
        self.compiled = OrderedDict()

    def _compiled(self, shape: Tuple[int, ...]):
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape]
        model = self.model.clone()
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
        compiled = self.core.compile_model(model, 'CPU', self.config)
        self.compiled[shape] = (compiled, compiled.create_infer_request())
        if len(self.compiled) > self.cache_size:
            self.compiled.popitem(last=False)
        return self.compiled[shape]

    def run_one(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        compiled, request = self._compiled(tuple(x.shape))
        result = request.infer({0: _numpy(x)})
        return tuple(torch.from_numpy(result[out].copy()).to(x.device)
                     for out in compiled.outputs)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return _per_image(self.run_one, x)


def _per_image(run, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The graph is exported for one image: a batch runs image by image."""
    if x.shape[0] == 1:
        return run(x)
    outs = [run(x[i:i + 1]) for i in range(x.shape[0])]
    return tuple(torch.cat(parts) for parts in zip(*outs))


def _numpy(x: torch.Tensor):
    return x.detach().to('cpu', torch.float32).contiguous().numpy()


def check_choice(engine: str, precision: str) -> None:
    """``ValueError`` naming the valid choices for an unknown engine or precision, or a
    precision the engine does not run."""
    if engine not in ENGINES:
        raise ValueError(f'engine must be one of {ENGINES}, got {engine!r}')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if engine == 'onnxruntime' and precision != 'fp32':
        raise ValueError('onnxruntime runs fp32 on CPU here; bf16 is an OpenVINO precision '
                         '(use --backend openvino --precision bf16)')


def build_engine(module: nn.Module, engine: str, precision: str = 'fp32',
                 work_dir: str = '.', name: str = 'model', shape: Sequence[int] = (448, 448),
                 threads: Optional[int] = None, log=print) -> nn.Module:
    """Fold ``module``'s backbones (``switch_to_deploy``), export it to
    ``work_dir/name.onnx`` with dynamic H and W, and load that into ``engine``.
    Returns the engine as a module returning a tuple of tensors."""
    check_choice(engine, precision)
    from .optimize import backbones_of
    module.eval()
    for backbone in backbones_of(module):
        backbone.switch_to_deploy()
    path = osp.join(work_dir, f'{name}.onnx')
    seconds = export_onnx(module, path, tuple(shape))
    log(f'exported {name} to {path} in {seconds:.1f} s (H and W dynamic)')
    if engine == 'onnxruntime':
        return OnnxRuntimeEngine(path, threads)
    return OpenVINOEngine(path, precision, threads)
