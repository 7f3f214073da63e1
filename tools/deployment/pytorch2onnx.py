"""Export a backbone (or a config's backbone + neck) to ONNX with dynamic height and width, and
check it with onnxruntime against PyTorch at several sizes.

    python tools/deployment/pytorch2onnx.py --backbone HIRIViT --arch s [--checkpoint CKPT]
        [--out hiri_vit_s.onnx] [--shape 448 448] [--check-shapes 448 448 480 640 449 611 ...]
        [--deploy] [--threads 2]
    python tools/deployment/pytorch2onnx.py --config configs/mask_rcnn_hiri_s_1x.py --with-neck ...

The model is exported with ``torch.onnx.export(..., dynamo=True)`` at ``--shape``, with H and W
marked dynamic, and optimised by onnxscript without its no-op rules (they would drop a 1e-8
epsilon: see ``mmhiri.runtime.engines.optimize_keeping_small_constants``); every size in
``--check-shapes`` (default: five, two of them odd) then runs in onnxruntime (CPU) and PyTorch (eval, fp32), and the script prints the largest absolute
difference per output and both throughputs at the first size (batch 1, median of
``--repeats``). It exits non-zero if a difference exceeds ``--tolerance`` (1e-4). Needs the
optional ``requirements/deploy.txt`` (installed by ``make setup``).
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmhiri.runtime.engines import (MAX_SIDE, MIN_SIDE, BackboneNeck,  # noqa: E402,F401
                                    export_onnx, optimize_keeping_small_constants)

DEFAULT_CHECKS = [(448, 448), (480, 640), (449, 611), (333, 517), (224, 224)]
#: the sizes the exported graph's dynamic height and width may take (``torch.export.Dim``)
SIDE_RANGE = (MIN_SIDE, MAX_SIDE)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--backbone', choices=['HIRIViT', 'ViTAEv2', 'ViTAE'])
    src.add_argument('--config', help='a config whose model.backbone (and neck) to export')
    parser.add_argument('--arch', default='s',
                        help="arch name ('s', 't', ...) or a JSON dict (with --backbone)")
    parser.add_argument('--with-neck', action='store_true', help='backbone + neck (--config)')
    parser.add_argument('--checkpoint', help='weights: a backbone state_dict, or a whole-model '
                        "checkpoint (its 'backbone.'/'neck.' keys are used)")
    parser.add_argument('--out', default='model.onnx')
    parser.add_argument('--shape', type=int, nargs=2, default=[448, 448], metavar=('H', 'W'))
    parser.add_argument('--check-shapes', type=int, nargs='+', metavar='H W',
                        help='pairs of sizes to check (default: 448 448 480 640 449 611 333 517 '
                        '224 224)')
    parser.add_argument('--deploy', action='store_true', help='switch_to_deploy() first')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    if args.check_shapes is None:
        args.check_shapes = DEFAULT_CHECKS
    elif len(args.check_shapes) % 2:
        parser.error('--check-shapes takes pairs: H W [H W ...]')
    else:
        s = args.check_shapes
        args.check_shapes = [(s[i], s[i + 1]) for i in range(0, len(s), 2)]
    if args.with_neck and not args.config:
        parser.error('--with-neck needs --config')
    lo, hi = SIDE_RANGE
    if not all(lo <= s <= hi for s in args.shape):
        parser.error(f'--shape: H and W must each be in [{lo}, {hi}] (the range of the exported '
                     f'dynamic height and width), got {args.shape[0]} {args.shape[1]}')
    for name in ('repeats', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1, got {getattr(args, name)}')
    if args.backbone:
        check_arch(parser, args.backbone, args.arch)
    return args


def check_arch(parser, backbone: str, arch: str) -> None:
    """``--arch`` must be an arch name of ``backbone`` or a JSON object (its keys are checked
    when the backbone is built); ``parser.error`` names what is wrong."""
    import mmhiri.models as models
    zoo = sorted(getattr(models, backbone).arch_zoo)
    if not arch.lstrip().startswith(('{', '[', '"')):
        if arch.lower() not in zoo:
            parser.error(f'--arch: {backbone} has no arch {arch!r}; expected one of {zoo} or a '
                         'JSON object of arch settings')
        return
    try:
        value = json.loads(arch)
    except json.JSONDecodeError as e:
        parser.error(f'--arch: not valid JSON ({e.msg} at character {e.pos}): {arch!r}; '
                     f'expected one of {zoo} or a JSON object of {backbone} arch settings')
    if not isinstance(value, dict):
        parser.error(f'--arch: expected a JSON object of {backbone} arch settings (or one of '
                     f'{zoo}), got a JSON {type(value).__name__}')


def build(args):
    """The module to export, in eval mode, and a name for it."""
    import torch

    import mmhiri.models as models
    if args.backbone:
        arch = json.loads(args.arch) if args.arch.lstrip().startswith('{') else args.arch
        module = getattr(models, args.backbone)(arch)
        name = f'{args.backbone}({args.arch if isinstance(arch, str) else "custom"})'
    else:
        from mmhiri.apis import build_in_scope, load_config
        cfg = load_config(args.config)
        bcfg = cfg.model.backbone
        bcfg.pop('init_cfg', None)
        backbone = build_in_scope(cfg, bcfg)
        name = type(backbone).__name__
        if args.with_neck:
            neck = build_in_scope(cfg, cfg.model.neck)
            module = BackboneNeck(backbone, neck)
            name += ' + ' + type(neck).__name__
        else:
            module = backbone
    if args.checkpoint:
        from mmengine.runner.checkpoint import CheckpointLoader

        from mmhiri.models.converters import check_load, unwrap_checkpoint
        state, _ = unwrap_checkpoint(CheckpointLoader.load_checkpoint(args.checkpoint, 'cpu'),
                                     prefer_ema=False)
        if args.with_neck:  # BackboneNeck's own names are backbone.* and neck.*
            state = {k: v for k, v in state.items() if k.startswith(('backbone.', 'neck.'))}
        elif any(k.startswith('backbone.') for k in state):  # a whole-model checkpoint
            state = {k[9:]: v for k, v in state.items() if k.startswith('backbone.')}
        check_load(module, state)
    module.eval()
    if args.deploy:
        backbone = module.backbone if isinstance(module, BackboneNeck) else module
        deploy_for_export(backbone)
    torch.set_grad_enabled(False)
    return module, name


def deploy_for_export(backbone) -> None:
    """``switch_to_deploy()``: the folded model (BatchNorms in the convolutions) is what
    exports; how it then runs is the engine's."""
    backbone.switch_to_deploy()


def export(module, out, shape):
    """torch.onnx.export with dynamic H and W (:func:`mmhiri.runtime.engines.export_onnx`);
    returns seconds taken."""
    return export_onnx(module, out, tuple(shape))


def check(module, out, sizes, repeats=5, threads=2):
    """Max |ORT - PyTorch| per size and (ORT, PyTorch) throughput at the first size."""
    import numpy as np
    import onnxruntime as ort
    import torch
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(out, opts, providers=['CPUExecutionProvider'])
    name = sess.get_inputs()[0].name
    diffs = []
    for h, w in sizes:
        x = torch.rand(1, 3, h, w)
        got = sess.run(None, {name: x.numpy()})
        ref = module(x)
        ref = ref if isinstance(ref, (tuple, list)) else (ref, )
        if len(got) != len(ref):
            raise RuntimeError(f'{h}x{w}: onnxruntime gave {len(got)} outputs, PyTorch {len(ref)}')
        diffs.append(((h, w), [float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref)],
                      [tuple(g.shape) for g in got]))
    x = torch.rand(1, 3, *sizes[0])
    rates = {}
    for label, fn in (('onnxruntime', lambda: sess.run(None, {name: x.numpy()})),
                      ('pytorch', lambda: module(x))):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rates[label] = 1 / statistics.median(times)
    return diffs, rates


def main(argv=None):
    args = parse_args(argv)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise SystemExit(f'ONNX export needs onnx, onnxruntime and onnxscript ({e}); install '
                         'requirements/deploy.txt (make setup does)')
    import torch
    from mmhiri.models.converters import ConversionError
    torch.set_num_threads(args.threads)
    try:
        module, name = build(args)
    except ConversionError as e:
        raise SystemExit(f'error: --checkpoint {args.checkpoint}: {e}')
    except (ValueError, TypeError) as e:  # a custom --arch the backbone refuses
        if not args.backbone:
            raise
        raise SystemExit(f'error: --arch: {e}')
    seconds = export(module, args.out, args.shape)
    print(f'exported {name} to {args.out} in {seconds:.1f} s (input 1x3xHxW, H and W dynamic; '
          f'traced at {args.shape[0]}x{args.shape[1]})')
    diffs, rates = check(module, args.out, args.check_shapes, args.repeats, args.threads)
    worst = 0.
    for (h, w), d, shapes in diffs:
        worst = max(worst, max(d))
        print(f'{h}x{w}: max |onnxruntime - pytorch| = {max(d):.2e} over {len(d)} outputs '
              f'{shapes}')
    h, w = args.check_shapes[0]
    print(f'throughput at {h}x{w}, batch 1, {args.threads} threads: onnxruntime '
          f'{rates["onnxruntime"]:.2f} img/s, pytorch eager {rates["pytorch"]:.2f} img/s '
          f'({rates["onnxruntime"] / rates["pytorch"]:.2f}x)')
    if worst > args.tolerance:
        raise SystemExit(f'max difference {worst:.2e} exceeds --tolerance {args.tolerance}')


if __name__ == '__main__':
    main()
