"""Parameters and FLOPs of the model a config builds (backbone alone and whole model).

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

Counter: mmengine's FlopAnalyzer (fvcore rules) on a traced forward in ``mode='tensor'``, batch
1, on CPU. One multiply-add counts as one FLOP (the papers' "GFLOPs"). Counted: convolutions,
linear layers and matrix products (attention included, fused or not), batch/layer/group norm, upsampling,
adaptive pooling. Not counted: element-wise operations (activations, additions, softmax).
For two-stage detectors the RoI heads run on the RPN's full proposal budget,
``test_cfg.rpn.max_per_img`` (1000) per image, the most inference does: the RPN's NMS is set to
keep every box for the count, so the figure does not depend on how many proposals random weights
happen to survive NMS with; mask heads run on at most ``test_cfg.rcnn.max_per_img`` (100) RoIs per image,
as at inference (mmdet's tensor path does so for Mask R-CNN, not for Cascade heads: see
``match_inference``). The input is padded to the preprocessor's ``pad_size_divisor``.

A ``--shape`` of more pixels than the framework's default is checked first: the memory the
forward needs there is estimated from the model's own forward at two small sizes
(:mod:`mmhiri.utils.memory`: live tensor bytes, operation by operation, linear in the pixels);
when it exceeds the memory available, the script stops with one line and the largest ``--shape``
of that aspect ratio that fits.
"""
import argparse
import os.path as osp
import sys
from functools import partial

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224 224 for classifiers, 1200 1600 for '
                        'detectors, 512 512 for segmentors, 256 256 for pose models)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if args.shape and min(args.shape) < 1:
        parser.error(f'--shape: H and W must be at least 1, got {args.shape[0]} {args.shape[1]}')
    return args


DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (1200, 1600), 'mmseg': (512, 512),
                  'mmpose': (256, 256)}


def count(module, inputs):
    import torch

    from mmhiri.utils.flops import flop_analyzer
    with torch.no_grad():
        return flop_analyzer(module, inputs).total()


def build_model(config, cfg_options=None):
    """The model ``config`` builds, in eval mode, without its pretrained weights.

    Returns ``(model, cfg, scope)``; the config's framework scope is made the default scope.
    """
    from mmhiri.apis import build_in_scope, load_config
    cfg = load_config(config, cfg_options)
    scope = cfg.default_scope
    model_cfg = cfg.model
    backbone_cfg = model_cfg.get('backbone') or {}
    if isinstance(backbone_cfg.get('init_cfg'), dict):
        backbone_cfg.init_cfg = None  # structure only: no need for the pretrained file
    model = build_in_scope(cfg, model_cfg).eval()
    match_inference(model)
    return model, cfg, scope


def match_inference(model):
    """Make mmdet heads' ``mode='tensor'`` paths do the work inference does at most.

    - Two-stage detectors: the RPN's NMS keeps every box, so the RoI heads see the full
      ``max_per_img`` proposal budget (a random model's NMS would keep a weight-dependent few).
    - Sparse R-CNN: its learned initial proposals are valid (whole-image) boxes only after their
      own ``init_weights``; as built they are random and RoIAlign rejects them.
    - Cascade RoI heads with masks: the stock tensor path runs every stage's mask head on all
      the RPN's proposals (1000); inference runs them on the final detections
      (``test_cfg.max_per_img``, 100 per image), as StandardRoIHead's tensor path does.
    """
    rpn = getattr(model, 'rpn_head', None)
    if rpn is not None and hasattr(rpn, 'init_proposal_bboxes'):
        rpn.init_weights()
    nms = ((getattr(rpn, 'test_cfg', None) or {}).get('nms') or {}) if rpn is not None else {}
    if 'iou_threshold' in nms:  # keep every proposal: the full budget, whatever the weights
        nms['iou_threshold'] = 1.0
    head = getattr(model, 'roi_head', None)
    try:
        from mmdet.models.roi_heads import CascadeRoIHead
    except ImportError:
        return
    if isinstance(head, CascadeRoIHead) and head.with_mask and \
            type(head).forward is CascadeRoIHead.forward:
        cap = (head.test_cfg or {}).get('max_per_img', 100)
        head.forward = partial(_cascade_forward, head, cap)


def _cascade_forward(head, cap, x, rpn_results_list, batch_data_samples):
    """CascadeRoIHead's tensor path with the mask heads on ``cap`` RoIs per image."""
    import torch
    from mmdet.structures.bbox import bbox2roi
    proposals = [r.bboxes for r in rpn_results_list]
    rois, cls_scores, bbox_preds = head._refine_roi(
        x, bbox2roi(proposals), [s.metainfo for s in batch_data_samples],
        tuple(len(p) for p in proposals))
    mask_rois = torch.cat([r[:cap] for r in rois])
    return (cls_scores, bbox_preds) + tuple(
        head._mask_forward(stage, x, mask_rois)['mask_preds'] for stage in range(head.num_stages))


def prepare_inputs(model, cfg, scope, shape=None, batch=1, device='cpu'):
    """A random ``batch x 3 x H x W`` input (H, W padded to the preprocessor's
    ``pad_size_divisor``) and ``model.forward`` bound to ``mode='tensor'`` with the data samples
    each framework needs. Returns ``(x, (h, w), div)``: the requested size and the divisor."""
    import torch
    h, w = shape or DEFAULT_SHAPES[scope]
    div = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor', 1) or 1
    ph, pw = -(-h // div) * div, -(-w // div) * div
    x = torch.rand(batch, 3, ph, pw, device=device)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(ph, pw), ori_shape=(h, w), scale_factor=(1., 1.),
                    batch_input_shape=(ph, pw), pad_shape=(ph, pw))
        samples = [DetDataSample(metainfo=meta) for _ in range(batch)]
        for s in samples:  # Sparse R-CNN's tensor path unpacks (empty) ground truth
            from mmengine.structures import InstanceData
            s.gt_instances = InstanceData(bboxes=torch.zeros(0, 4, device=device),
                                          labels=torch.zeros(0, dtype=torch.long, device=device))
        model.forward = partial(model.forward, data_samples=samples, mode='tensor')
    else:
        model.forward = partial(model.forward, data_samples=None, mode='tensor')
    return x, (h, w), div


def forward_memory(model, cfg, scope):
    """:class:`mmhiri.utils.memory.MemoryFit` of the forward ``prepare_inputs(model, cfg,
    scope, shape)`` binds, in the padded input's pixels (probed at 128x128 and 256x256, padded;
    :func:`mmhiri.utils.memory.fit_forward_memory`)."""
    from mmhiri.utils.memory import fit_forward_memory

    def run(h, w):
        x, _, _ = prepare_inputs(model, cfg, scope, (h, w))
        try:
            model(x)
        finally:
            del model.forward  # prepare_inputs bound it; the class's own again

    div = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor', 1) or 1
    return fit_forward_memory(run, [(-(-s // div) * div, ) * 2 for s in (128, 256)])


def check_memory(model, cfg, scope, shape, available=None) -> None:
    """Stop with one line when the forward at ``shape`` (when it has more pixels than the
    framework's default shape) would need more memory than ``available`` (default:
    :func:`mmhiri.utils.memory.available_memory`)."""
    from mmhiri.utils.memory import available_memory, gb
    h, w = shape
    div = (cfg.model.get('data_preprocessor') or {}).get('pad_size_divisor', 1) or 1
    pixels = (-(-h // div) * div) * (-(-w // div) * div)
    dh, dw = DEFAULT_SHAPES[scope]
    if pixels <= dh * dw:
        return  # the default size: no probe (it costs two forwards)
    fit = forward_memory(model, cfg, scope)
    available = available_memory() if available is None else available
    if fit(pixels) <= available:
        return
    scale = min(1., fit.max_pixels(available) / pixels) ** 0.5
    hint = f'--shape {int(h * scale)} {int(w * scale)} would fit' if scale * min(h, w) >= div \
        else 'nothing of that aspect ratio fits'
    raise SystemExit(
        f'error: --shape {h} {w}: the forward of {type(model).__name__} at that size needs about '
        f'{gb(fit(pixels))} (estimated from its memory at two small sizes, growing with the '
        f'pixels); {gb(available)} is available: {hint}')


def measure(config, shape=None, cfg_options=None, check_memory_first=False):
    """Parameters (M) and GFLOPs of the whole model and of its backbone, batch 1, on CPU.
    ``check_memory_first``: stop with one line when that size does not fit in memory
    (:func:`check_memory`)."""
    model, cfg, scope = build_model(config, cfg_options)
    if check_memory_first:
        check_memory(model, cfg, scope, shape or DEFAULT_SHAPES[scope])
    x, (h, w), div = prepare_inputs(model, cfg, scope, shape)
    backbone = getattr(model, 'backbone', None)
    return dict(
        scope=scope, model=type(model).__name__, shape=(h, w), input=tuple(x.shape[2:]), div=div,
        params=sum(p.numel() for p in model.parameters()) / 1e6,
        flops=count(model, (x, )) / 1e9,
        backbone=type(backbone).__name__ if backbone is not None else None,
        backbone_params=sum(p.numel() for p in backbone.parameters()) / 1e6
        if backbone is not None else None,
        backbone_flops=count(backbone, (x, )) / 1e9 if backbone is not None else None)


def main(argv=None):
    args = parse_args(argv)
    r = measure(args.config, args.shape, args.cfg_options, check_memory_first=True)
    (h, w), (ph, pw), div = r['shape'], r['input'], r['div']
    print(f'config: {args.config} ({r["scope"]})')
    print(f'input: 1x3x{ph}x{pw}' + (f' (from {h}x{w}, padded to /{div})' if (ph, pw) != (h, w) else ''))
    if r['backbone'] is not None:
        print(f'backbone ({r["backbone"]}): {r["backbone_params"]:.2f} M params, '
              f'{r["backbone_flops"]:.2f} GFLOPs')
    print(f'whole model ({r["model"]}): {r["params"]:.2f} M params, {r["flops"]:.2f} GFLOPs')
    print('counted: conv, linear/matmul (incl. attention), norms, upsample, adaptive pool; '
          '1 multiply-add = 1 FLOP; element-wise ops not counted')


if __name__ == '__main__':
    main()
