"""Parameters and FLOPs of the model a config builds (backbone alone and whole model).

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

Counter: mmengine's FlopAnalyzer (fvcore rules) on a traced forward in ``mode='tensor'``, batch
1, on CPU. One multiply-add counts as one FLOP (the papers' "GFLOPs"). Counted: convolutions,
linear layers and matrix products (attention included), batch/layer/group norm, upsampling,
adaptive pooling. Not counted: element-wise operations (activations, additions, softmax).
For two-stage detectors the RoI heads run on the RPN's proposals for this (random) input, as in
mmdet's own get_flops. The input is padded to the preprocessor's ``pad_size_divisor``.
"""
import argparse
import os.path as osp
import sys
from functools import partial

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224 224 for classifiers, 1200 1600 for '
                        'detectors, 512 512 for segmentors, 256 256 for pose models)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (1200, 1600), 'mmseg': (512, 512),
                  'mmpose': (256, 256)}


def count(module, inputs):
    import torch
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total()


def main():
    args = parse_args()
    import torch
    from mmengine.registry import init_default_scope

    from mmhiri.apis import load_config
    cfg = load_config(args.config, args.cfg_options)
    scope = cfg.default_scope
    init_default_scope(scope)
    import mmhiri  # noqa: F401
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model
    backbone_cfg = model_cfg.get('backbone') or {}
    if isinstance(backbone_cfg.get('init_cfg'), dict):
        backbone_cfg.init_cfg = None  # structure only: no need for the pretrained file
    model = registry.build(model_cfg).eval()

    h, w = args.shape or DEFAULT_SHAPES[scope]
    div = (model_cfg.get('data_preprocessor') or {}).get('pad_size_divisor', 1) or 1
    ph, pw = -(-h // div) * div, -(-w // div) * div
    x = torch.rand(1, 3, ph, pw)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(ph, pw), ori_shape=(h, w), scale_factor=(1., 1.),
                    batch_input_shape=(ph, pw), pad_shape=(ph, pw))
        model.forward = partial(model.forward, data_samples=[DetDataSample(metainfo=meta)],
                                mode='tensor')
    else:
        model.forward = partial(model.forward, data_samples=None, mode='tensor')

    params = sum(p.numel() for p in model.parameters()) / 1e6
    backbone = getattr(model, 'backbone', None)
    bb_params = sum(p.numel() for p in backbone.parameters()) / 1e6 if backbone else None
    flops = count(model, (x, )) / 1e9
    bb_flops = count(backbone, (x, )) / 1e9 if backbone is not None else None
    print(f'config: {args.config} ({scope})')
    print(f'input: 1x3x{ph}x{pw}' + (f' (from {h}x{w}, padded to /{div})' if (ph, pw) != (h, w) else ''))
    if backbone is not None:
        print(f'backbone ({type(backbone).__name__}): {bb_params:.2f} M params, '
              f'{bb_flops:.2f} GFLOPs')
    print(f'whole model ({type(model).__name__}): {params:.2f} M params, {flops:.2f} GFLOPs')
    print('counted: conv, linear/matmul (incl. attention), norms, upsample, adaptive pool; '
          '1 multiply-add = 1 FLOP; element-wise ops not counted')


if __name__ == '__main__':
    main()
