"""One check to run on a GPU machine after set-up: mmcv's CUDA ops, every backbone family in
fp32, fp16 and bf16 against CPU fp32, and a few mixed-precision training iterations of the main
configs (and of mmdet's stock Swin-T Mask R-CNN) with iteration time and peak GPU memory side
by side. Exits non-zero when any check fails.

    python tools/gpu_check.py                        # on the GPU machine, after `make setup`
    python tools/gpu_check.py --device cpu --tiny    # the same logic and report on CPU (CI)
        [--amp-dtype fp16|bf16] [--iters N] [--warmup K] [--batch B]
        [--only ops|families|train ...] [--work-dir DIR] [--json FILE] [--verbose]

What it checks (each check prints PASS, FAIL or SKIP with its reason, then a summary):

* ``ops``: mmcv was built with CUDA ops; ``nms`` (3000 boxes), ``RoIAlign`` (forward and input
  gradient, two sampling ratios, and fp16 forward) and ``sigmoid_focal_loss`` (loss and
  gradient) on CUDA tensors against mmcv's CPU ops, and against mmdet's pure-PyTorch
  ``py_sigmoid_focal_loss`` for the focal loss (mmcv 2.1.0 has no CPU kernel for it). With
  ``--device cpu``: mmcv's CPU ``nms`` and ``RoIAlign`` against torchvision's; the focal loss
  is skipped.
* ``families``: HIRI-ViT-S, ViTAEv2-S and ViTAE-T (``--tiny``: tiny widths) in train mode, one
  forward and backward on a 2 x 3 x 224 x 288 input (``--tiny``: 67 x 93) in fp32, fp16 and
  bf16 autocast on CUDA against the same model in fp32 on CPU (``--device cpu``: bf16 autocast
  against fp32). The loss is a fixed random projection of every output (a loss such as the
  outputs' mean square is constant behind HIRI-ViT's output BatchNorms, and its gradients are
  rounding noise); fp16 backward runs at a fixed loss scale of 1024. Compared: the outputs'
  cosine similarity (worst output), the cosine of all parameter gradients together, and the
  worst per-tensor cosine over the weights of two or more dimensions. 1-D parameters (norm
  affines, biases: sums over every position, where 16-bit rounding cancels most) are reported,
  not gated; gradients that are zero in exact arithmetic (a bias before a train-mode
  BatchNorm: RMS below 5e-4 of the median tensor's in fp32) are left out. Everything must be
  finite; the thresholds are printed with the results.
* ``train``: ``configs/mask_rcnn_hiri_s_1x.py``, mmdet's
  ``swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``, ``configs/upernet_hiri_s_160k_ade20k.py``,
  ``configs/simplebaseline_hiri_s_ap10k.py`` and ``configs/imagenet/hiri_s_224.py``, each
  through ``mmhiri.apis.build_runner(..., amp=True)`` (as ``tools/train.py --amp``: mmengine's
  ``AmpOptimWrapper``, fp16 with dynamic loss scaling by default, on CUDA;
  ``CPUAutocastOptimWrapper`` bf16 on CPU) on generated data
  (``mmhiri.datasets.synthetic``, ``mmhiri.datasets.classification``) written at sizes that
  make each config's own pipeline produce its real input size (Mask R-CNN HIRI-ViT 1600 x 2133,
  Swin-T 800 x 1067, UPerNet crops of up to 1024 x 1024 padded to it, SimpleBaseline 512 x 512,
  classifier 224 x 224) with each config's per-GPU batch (``--batch`` overrides; ``--tiny``: tiny widths, 128 x
  128 inputs, batch 2). The model is the config's with no pretrained weights; the pose head
  predicts the generated data's 5 keypoints (AP-10K has 17). Changed for the run only: an
  iteration-based loop of ``--warmup`` + ``--iters`` iterations, no validation, no checkpoints,
  logger interval 1, the iteration-based learning-rate schedulers kept (warm-ups) and the
  epoch-based ones dropped (they would not step within a few iterations). Timed by a hook from
  ``before_train_iter`` to ``after_train_iter`` (CUDA synchronised at both): the train step
  (data preprocessing and host-to-device copy, forward, backward, optimizer step), not the data
  loading. Reported: the network's input (the data preprocessor's padded batch), the median
  over the iterations after the warm-up, and ``torch.cuda.max_memory_allocated`` over the run
  (model, optimizer state and activations).
  Fails on an error, a non-finite loss, or no optimizer step applied in the whole run (every
  step skipped by the loss scaler).

Exit status: 0 when every check passed (a SKIP is not a failure), 1 when any failed, 2 for a
usage error, including ``--device cuda`` (the default) where torch sees no GPU.
"""
import argparse
import contextlib
import copy
import io
import json
import math
import os
import os.path as osp
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from typing import Callable, List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

SECTIONS = ('ops', 'families', 'train')
DTYPES = {'fp32': 'float32', 'fp16': 'float16', 'bf16': 'bfloat16'}

# Tiny widths (same stages / block types as the real models) for --tiny.
TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4])

# (family, real arch, tiny arch, out_indices)
FAMILIES = (('HIRIViT', 's', None), ('ViTAEv2', 's', None), ('ViTAE', 't', (-1, )))
FAMILY_INPUT = {False: (2, 3, 224, 288), True: (2, 3, 67, 93)}
# (worst output cosine, all-gradient cosine, worst >=2-D weight gradient cosine)
THRESHOLDS = {'fp32': (0.9999, 0.9995, 0.999), 'fp16': (0.99, 0.99, 0.98),
              'bf16': (0.99, 0.99, 0.98)}
FP16_LOSS_SCALE = 1024.
ZERO_GRAD_RMS = 5e-4  # of the median tensor's gradient RMS: zero in exact arithmetic

TINY_SIZE = (128, 128)


def _tiny(name):
    """The tiny widths of family ``name`` (imported late: --device cpu hides the GPU from
    torch before it is imported)."""
    from mmhiri.models.tiny import TINY_ARCHS
    return TINY_ARCHS[name]


class CheckFailed(Exception):
    """A check's result is wrong; the message is the reason."""


class Skipped(Exception):
    """A check that cannot run here; the message says why."""


# --------------------------------------------------------------------------- arguments

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def _whole_number(minimum):
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}')
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be at least {minimum}, got {value}')
        return value
    return parse


_positive, _non_negative = _whole_number(1), _whole_number(0)


def parse_args(argv=None):
    parser = _Parser(
        prog='gpu_check.py',
        description='Check a GPU set-up: mmcv CUDA ops, every backbone family in fp32/fp16/'
        'bf16 against CPU fp32, and mixed-precision training iterations of the main configs '
        'and of mmdet\'s Swin-T Mask R-CNN (iteration time, peak GPU memory). Exit status 0: '
        'all passed; 1: a check failed; 2: usage error or no GPU for --device cuda.',
        epilog='CI runs `--device cpu --tiny`, which exercises every part that runs on CPU '
        '(mmcv CPU ops, bf16 autocast, a few training iterations with tiny widths).')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='where to run (default cuda; without a GPU it stops, exit 2)')
    parser.add_argument('--tiny', action='store_true',
                        help='tiny widths and 128x128 inputs (fast; how CI runs the check)')
    parser.add_argument('--amp-dtype', choices=['fp16', 'bf16'],
                        help='training dtype of --amp (default fp16 with loss scaling on CUDA, '
                        'bf16 on CPU, where fp16 is refused)')
    parser.add_argument('--iters', type=_positive,
                        help='timed training iterations per job, after the warm-up '
                        '(default 8; --tiny: 2)')
    parser.add_argument('--warmup', type=_non_negative,
                        help='untimed warm-up iterations per job (default 3; --tiny: 1)')
    parser.add_argument('--batch', type=_positive,
                        help="training batch of every job (default: each config's per-GPU "
                        'batch; --tiny: 2)')
    parser.add_argument('--only', nargs='+', choices=SECTIONS, metavar='PART',
                        help=f'run only these parts: {", ".join(SECTIONS)} (default: all)')
    parser.add_argument('--work-dir',
                        help='where generated data and training logs go (kept; default: a '
                        'temporary folder, removed at the end)')
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    parser.add_argument('--verbose', action='store_true',
                        help="show mmengine's logs and warnings, and tracebacks of failures")
    # testing the report: make the named checks fail ('ops/nms', 'train', ...)
    parser.add_argument('--fail-check', action='append', default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == 'cpu' and args.amp_dtype == 'fp16':
        parser.error('--amp-dtype fp16 needs a GPU (fp16 trains with loss scaling on CUDA); on '
                     'CPU --amp trains in bf16')
    args.iters = args.iters or (2 if args.tiny else 8)
    args.warmup = (1 if args.tiny else 3) if args.warmup is None else args.warmup
    args.only = tuple(s for s in SECTIONS if s in (args.only or SECTIONS))
    return args


# --------------------------------------------------------------------------- report

class Report:
    """Runs checks one by one, prints each result as it comes and the summary at the end."""

    def __init__(self, fail_checks=(), verbose=False, out=None):
        self.results: List[dict] = []
        self.fail_checks = list(fail_checks)
        self.verbose = verbose
        self.out = out or sys.stdout

    def print(self, *lines):
        for line in lines:
            print(line, file=self.out, flush=True)

    def _injected(self, name):
        return any(name == f or name.startswith(f.rstrip('/') + '/') for f in self.fail_checks)

    def run(self, section: str, name: str, fn: Callable[[], object]) -> dict:
        """``fn()`` returns a one-line reason (or ``(reason, data)``) when the check passes
        and raises :class:`CheckFailed` / :class:`Skipped` otherwise; any other exception is
        a failure, reported by its type and first line."""
        full = f'{section}/{name}'
        start = time.perf_counter()
        data = {}
        try:
            if self._injected(full):
                raise CheckFailed('failure injected with --fail-check')
            reason = fn()
            if isinstance(reason, tuple):
                reason, data = reason
            status = 'PASS'
        except Skipped as e:
            status, reason = 'SKIP', str(e)
        except CheckFailed as e:
            status, reason = 'FAIL', str(e)
            data = getattr(e, 'data', {}) or {}
        except (Exception, SystemExit) as e:  # SystemExit: build_runner's refusals
            status, reason = 'FAIL', _one_line(e)
            if self.verbose:
                traceback.print_exc()
        result = dict(section=section, name=name, check=full, status=status, reason=reason,
                      seconds=round(time.perf_counter() - start, 2), **data)
        self.results.append(result)
        self.print(f'  {status:<4}  {name:<34} {reason}  ({result["seconds"]:.1f} s)')
        return result

    def failed(self):
        return [r for r in self.results if r['status'] == 'FAIL']


def _one_line(e: BaseException) -> str:
    """``Type: message (at file:line)`` of the innermost frame, on one line."""
    text = ' '.join(str(e).split()) or '(no message)'
    if isinstance(e, SystemExit):
        return text
    if len(text) > 300:
        text = text[:297] + '...'
    frames = traceback.extract_tb(e.__traceback__)
    where = ''
    if frames:
        path = frames[-1].filename
        path = path.split('site-packages' + os.sep, 1)[-1] if 'site-packages' in path else \
            osp.relpath(path, ROOT) if path.startswith(ROOT) else path
        where = f' (at {path}:{frames[-1].lineno})'
    return f'{type(e).__name__}: {text}{where}'


# --------------------------------------------------------------------------- ops

def _rel_err(a, b):
    """max |a - b| / max |b| (both moved to CPU fp64)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_mmcv_build(device):
    import mmcv
    import mmcv.ops  # noqa: F401  (loads mmcv._ext)
    from mmcv.ops import get_compiling_cuda_version
    compiled = get_compiling_cuda_version()
    if device == 'cpu':
        return f'mmcv {mmcv.__version__} with its compiled ops (CUDA: {compiled})'
    import torch
    if compiled == 'not available':
        raise CheckFailed(
            f'mmcv {mmcv.__version__} was built without CUDA ops (get_compiling_cuda_version() '
            "is 'not available'): rebuild it on this GPU machine (make setup)")
    return (f'mmcv {mmcv.__version__} compiled with CUDA {compiled} (torch: CUDA '
            f'{torch.version.cuda})')


def check_nms(device):
    import torch
    from mmcv.ops import nms
    g = torch.Generator().manual_seed(0)
    n = 3000  # several 64-box blocks of the CUDA kernel
    xy = torch.rand(n, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 4], 1)
    scores = torch.rand(n, generator=g)
    if device == 'cuda':
        _, keep = nms(boxes.cuda(), scores.cuda(), 0.5)
        _, ref = nms(boxes, scores, 0.5)
        ref_name = "mmcv's CPU nms"
    else:
        tv = _torchvision_ops()
        _, keep = nms(boxes, scores, 0.5)
        ref = tv.nms(boxes, scores, 0.5)
        ref_name = "torchvision's nms"
    keep, ref = keep.cpu().long(), ref.cpu().long()
    if not torch.equal(keep, ref):
        m = min(len(keep), len(ref))
        first = next((i for i in range(m) if keep[i] != ref[i]), m)
        raise CheckFailed(f'{len(keep)} boxes kept vs {len(ref)} by {ref_name}; first '
                          f'difference at rank {first}')
    return f'{n} boxes, IoU 0.5: the same {len(keep)} kept, in the same order, as {ref_name}'


def _torchvision_ops():
    try:
        import torchvision.ops as tv
    except ImportError as e:
        raise Skipped(f'no CPU reference: torchvision is not importable ({e})')
    return tv


def _roi_inputs():
    import torch
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 48, 64, generator=g)  # stride 4 of a 192 x 256 image
    k = 96
    xy = torch.rand(k, 2, generator=g) * torch.tensor([280., 220.]) - 20  # some cross the edge
    wh = torch.rand(k, 2, generator=g) * 120 + 2
    idx = torch.randint(0, 2, (k, 1), generator=g).float()
    rois = torch.cat([idx, xy, xy + wh], 1)
    grad = torch.randn(k, 16, 7, 7, generator=g)
    return feats, rois, grad


def check_roi_align(device, tol=1e-4, half_tol=1e-2):
    import torch
    from mmcv.ops import roi_align
    feats, rois, grad = _roi_inputs()

    def run(fn, f, r, dtype=torch.float32):
        x = f.detach().clone().to(dtype).requires_grad_(True)
        y = fn(x, r.to(dtype), (7, 7), 0.25, sr, aligned=True)
        y.backward(grad.to(y.device, y.dtype))
        return y, x.grad

    worst = dict(fwd=0., grad=0.)
    for sr in (0, 2):
        if device == 'cuda':
            def mm(x, r, size, scale, ratio, aligned):
                return roi_align(x, r, size, scale, ratio, 'avg', aligned)
            y, gx = run(mm, feats.cuda(), rois.cuda())
            ry, rg = run(mm, feats, rois)
            ref_name = "mmcv's CPU RoIAlign"
        else:
            tv = _torchvision_ops()

            def mm(x, r, size, scale, ratio, aligned):
                return roi_align(x, r, size, scale, ratio, 'avg', aligned)
            y, gx = run(mm, feats, rois)
            ry, rg = run(tv.roi_align, feats, rois)
            ref_name = "torchvision's roi_align"
        worst['fwd'] = max(worst['fwd'], _rel_err(y, ry))
        worst['grad'] = max(worst['grad'], _rel_err(gx, rg))
    if not (worst['fwd'] <= tol and worst['grad'] <= tol):
        raise CheckFailed(f'max relative difference to {ref_name}: forward {worst["fwd"]:.1e}, '
                          f'input gradient {worst["grad"]:.1e} (tolerance {tol:.0e})')
    msg = (f'96 RoIs, 7x7, sampling ratio 0 and 2: forward {worst["fwd"]:.1e}, input '
           f'gradient {worst["grad"]:.1e} of {ref_name} (<= {tol:.0e})')
    if device == 'cuda':  # what Mask R-CNN runs under fp16 autocast
        y = roi_align(feats.cuda().half(), rois.cuda().half(), (7, 7), 0.25, 0, 'avg', True)
        ref = roi_align(feats, rois, (7, 7), 0.25, 0, 'avg', True)
        err = _rel_err(y.float(), ref)
        if not err <= half_tol:
            raise CheckFailed(f'fp16 forward off by {err:.1e} of the fp32 CPU result '
                              f'(tolerance {half_tol:.0e})')
        msg += f'; fp16 forward {err:.1e} (<= {half_tol:.0e})'
    return msg


def check_focal_loss(device, tol=1e-4):
    if device != 'cuda':
        raise Skipped('mmcv 2.1.0 has no CPU kernel for sigmoid_focal_loss (mmdet\'s '
                      'FocalLoss runs py_sigmoid_focal_loss on CPU)')
    import torch
    import torch.nn.functional as F
    from mmcv.ops import sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    g = torch.Generator().manual_seed(0)
    n, c = 512, 80
    pred = torch.randn(n, c, generator=g) * 3
    labels = torch.randint(0, c + 1, (n, ), generator=g)  # c = background
    x = pred.cuda().requires_grad_(True)
    loss = sigmoid_focal_loss(x, labels.cuda(), 2.0, 0.25, None, 'none')
    loss.sum().backward()
    xr = pred.clone().requires_grad_(True)
    ref = py_sigmoid_focal_loss(xr, F.one_hot(labels, c + 1)[:, :c].float(), None, 2.0, 0.25,
                                'none')
    ref.sum().backward()
    e_loss, e_grad = _rel_err(loss, ref), _rel_err(x.grad, xr.grad)
    if not (e_loss <= tol and e_grad <= tol):
        raise CheckFailed(f'max relative difference to py_sigmoid_focal_loss: loss {e_loss:.1e}, '
                          f'gradient {e_grad:.1e} (tolerance {tol:.0e})')
    return (f'{n} x {c} logits, gamma 2, alpha 0.25: loss {e_loss:.1e}, gradient {e_grad:.1e} '
            f"of mmdet's py_sigmoid_focal_loss on CPU (<= {tol:.0e})")


def run_ops(report: Report, device: str):
    report.print('[ops] mmcv ops' + (' on CUDA tensors against mmcv CPU / pure PyTorch'
                                      if device == 'cuda' else ' on CPU against torchvision'))
    build = report.run('ops', 'mmcv_build', lambda: check_mmcv_build(device))
    for name, fn in (('nms', check_nms), ('roi_align', check_roi_align),
                     ('sigmoid_focal_loss', check_focal_loss)):
        if build['status'] == 'FAIL' and device == 'cuda':
            report.run('ops', name, _not_run)
        else:
            report.run('ops', name, lambda fn=fn: fn(device))


def _not_run():
    raise CheckFailed('not run: mmcv has no CUDA ops here')


# --------------------------------------------------------------------------- families

def _cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


def _family_model(name, tiny, arch, tiny_arch, out_indices):
    import torch

    import mmhiri.models as models
    torch.manual_seed(0)
    model = getattr(models, name)(tiny_arch if tiny else arch, out_indices=out_indices,
                                  drop_path_rate=0.)
    model.init_weights()
    return model.train()


def family_step(model, x, targets, device, dtype):
    """One forward and backward; (outputs, {parameter: gradient}) as fp32 CPU tensors."""
    import torch
    model.zero_grad(set_to_none=True)
    scale = FP16_LOSS_SCALE if dtype == 'fp16' else 1.
    autocast = contextlib.nullcontext() if dtype == 'fp32' else \
        torch.autocast(device, dtype=getattr(torch, DTYPES[dtype]))
    with autocast:
        outs = model(x)
        loss = sum((o.float() * t).sum() / math.sqrt(t.numel()) for o, t in zip(outs, targets))
    (loss * scale).backward()
    return ([o.detach().float().cpu() for o in outs],
            {n: p.grad.detach().float().cpu() / scale for n, p in model.named_parameters()
             if p.grad is not None})


def compare_family(outs, grads, ref_outs, ref_grads, dtype):
    """Numbers and the verdict of one family / dtype against the fp32 CPU reference."""
    import torch
    t_out, t_all, t_weight = THRESHOLDS[dtype]
    problems = []
    if len(outs) != len(ref_outs) or any(a.shape != b.shape for a, b in zip(outs, ref_outs)):
        raise CheckFailed(f'output shapes {[tuple(o.shape) for o in outs]} differ from the '
                          f'reference {[tuple(o.shape) for o in ref_outs]}')
    if set(grads) != set(ref_grads):
        raise CheckFailed(f'{len(set(ref_grads) - set(grads))} parameters got no gradient '
                          f'(e.g. {sorted(set(ref_grads) - set(grads))[:2]})')
    bad = [f'output {i}' for i, o in enumerate(outs) if not torch.isfinite(o).all()]
    bad += [n for n, g in grads.items() if not torch.isfinite(g).all()]
    if bad:
        raise CheckFailed(f'non-finite values in {len(bad)} tensors (first: {bad[0]})')
    out_cos = min(_cosine(a, b) for a, b in zip(outs, ref_outs))
    rms = {n: float(g.double().pow(2).mean().sqrt()) for n, g in ref_grads.items()}
    floor = ZERO_GRAD_RMS * statistics.median(rms.values())
    kept = [n for n in ref_grads if rms[n] > floor]
    all_cos = _cosine(torch.cat([grads[n].flatten() for n in kept]),
                      torch.cat([ref_grads[n].flatten() for n in kept]))
    per = {n: _cosine(grads[n], ref_grads[n]) for n in kept}
    weights = [n for n in kept if ref_grads[n].dim() >= 2]
    w_name = min(weights, key=per.get)
    ones = [n for n in kept if ref_grads[n].dim() < 2]
    o_name = min(ones, key=per.get) if ones else None
    data = dict(out_cos=out_cos, grad_cos=all_cos, worst_weight=[w_name, per[w_name]],
                worst_1d=[o_name, per[o_name]] if o_name else None,
                zero_grads_left_out=len(ref_grads) - len(kept), thresholds=[t_out, t_all, t_weight])
    if out_cos < t_out:
        problems.append(f'output cosine {out_cos:.5f} < {t_out}')
    if all_cos < t_all:
        problems.append(f'gradient cosine {all_cos:.5f} < {t_all}')
    if per[w_name] < t_weight:
        problems.append(f'weight {w_name} gradient cosine {per[w_name]:.5f} < {t_weight}')
    text = (f'out {out_cos:.5f}, grads {all_cos:.5f}, worst weight {per[w_name]:.5f}'
            + (f', worst 1-D {per[o_name]:.3f}' if o_name else ''))
    if problems:
        err = CheckFailed('; '.join(problems) + f' ({text})')
        err.data = data
        raise err
    return text, data


def run_families(report: Report, device: str, tiny: bool):
    import torch
    dtypes = ['fp32', 'fp16', 'bf16'] if device == 'cuda' else ['bf16']
    shape = FAMILY_INPUT[tiny]
    limits = '; '.join(f'{d}: out >= {THRESHOLDS[d][0]}, grads >= {THRESHOLDS[d][1]}, '
                       f'worst weight >= {THRESHOLDS[d][2]}' for d in dtypes)
    tf32 = (f' (TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN '
            f'{torch.backends.cudnn.allow_tf32})' if device == 'cuda' else '')
    report.print(f'[families] forward + backward on {"x".join(map(str, shape))}, train mode, '
                 f'{"/".join(dtypes)} on {device}{tf32} vs fp32 on CPU; cosine thresholds: '
                 f'{limits}')
    for name, arch, out_indices in FAMILIES:
        tiny_arch = _tiny(name)
        state = {}

        def reference():
            model = _family_model(name, tiny, arch, tiny_arch, out_indices)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(*shape, generator=g)
            with torch.no_grad():
                sizes = [o.shape for o in model(x)]
            targets = [torch.randn(s, generator=g) for s in sizes]
            state.update(model=model, x=x, targets=targets,
                         ref=family_step(model, x, targets, 'cpu', 'fp32'))

        label = name if not tiny else f'{name} (tiny)'
        for dtype in dtypes:
            def one(dtype=dtype):
                if 'ref' not in state:
                    reference()
                model = copy.deepcopy(state['model']).to(device)
                outs, grads = family_step(model, state['x'].to(device),
                                          [t.to(device) for t in state['targets']], device, dtype)
                return compare_family(outs, grads, *state['ref'], dtype)
            report.run('families', f'{label} {dtype}', one)


# --------------------------------------------------------------------------- train

def _set_transform(pipeline, kind, **kwargs):
    hits = [t for t in pipeline if isinstance(t, dict) and t.get('type') == kind]
    if not hits:
        raise CheckFailed(f'the training pipeline has no {kind} to set {kwargs} on')
    for t in hits:
        t.update(kwargs)


def _images(n_min, batch):
    return max(n_min, batch)


def _prepare_det(cfg, data, tiny, batch, swin):
    from mmhiri.datasets.synthetic import CLASSES, generate_instances
    # COCO-sized pictures (480 x 640): the config's own Resize makes its real input size
    size = TINY_SIZE if tiny else (480, 640)
    generate_instances(data, _images(4, batch), 0, size=size, seed=0)
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=data + '/', ann_file='annotations/instances_train.json',
              data_prefix=dict(img='images/train/'), metainfo=dict(classes=CLASSES))
    m = cfg.model
    m.backbone.init_cfg = None
    if tiny:
        if swin:
            m.backbone.update(TINY_SWIN)
            chans = [TINY_SWIN['embed_dims'] * 2 ** i for i in range(4)]
        else:
            m.backbone.arch = _tiny('HIRIViT')
            chans = _tiny('HIRIViT')['channels'][1:]
        m.neck.update(in_channels=chans, out_channels=32)
        m.rpn_head.update(in_channels=32, feat_channels=32)
        r = m.roi_head
        r.bbox_roi_extractor.out_channels = 32
        r.bbox_head.update(in_channels=32, fc_out_channels=64)
        r.mask_roi_extractor.out_channels = 32
        r.mask_head.update(in_channels=32, conv_out_channels=32)
        _set_transform(ds.pipeline, 'Resize', scale=TINY_SIZE[::-1])


def _prepare_seg(cfg, data, tiny, batch):
    from mmhiri.datasets.synthetic import generate_semantic
    size = TINY_SIZE if tiny else (512, 683)  # ADE20K's usual picture
    generate_semantic(data, _images(4, batch), 0, size=size, seed=0)
    ds = cfg.train_dataloader.dataset
    ds.data_root = data  # ADE20K's folder layout
    m = cfg.model
    m.backbone.init_cfg = None
    if tiny:
        c = _tiny('HIRIViT')['channels']
        m.backbone.arch = _tiny('HIRIViT')
        m.decode_head.update(in_channels=c[1:], channels=32)
        m.auxiliary_head.update(in_channels=c[3], channels=16)
        m.data_preprocessor.size = TINY_SIZE
        _set_transform(ds.pipeline, 'RandomResize', scale=(4 * TINY_SIZE[1], TINY_SIZE[0]))
        _set_transform(ds.pipeline, 'RandomCrop', crop_size=TINY_SIZE)


def _prepare_pose(cfg, data, tiny, batch):
    from mmhiri.datasets.synthetic import KEYPOINTS, generate_keypoints
    size = TINY_SIZE if tiny else (320, 320)
    generate_keypoints(data, _images(4, -(-batch // 2)), 0, size=size, seed=0)  # 1-3 per picture
    ds = cfg.train_dataloader.dataset
    ds.update(type='CocoDataset', data_root=data + '/', ann_file='annotations/keypoints_train.json',
              data_prefix=dict(img='images/train/'),
              metainfo=dict(from_file=osp.join(ROOT, 'configs/_base_/datasets/synthetic_quads.py')))
    m = cfg.model
    m.backbone.init_cfg = None
    m.head.out_channels = len(KEYPOINTS)
    if tiny:
        c = _tiny('HIRIViT')['channels']
        m.backbone.arch = _tiny('HIRIViT')
        m.head.update(in_channels=c[-1], deconv_out_channels=(32, 32, 32))
        stride = m.head.decoder.input_size[0] // m.head.decoder.heatmap_size[0]
        codec = dict(m.head.decoder, input_size=TINY_SIZE,
                     heatmap_size=tuple(s // stride for s in TINY_SIZE))
        m.head.decoder = codec
        _set_transform(ds.pipeline, 'TopdownAffine', input_size=TINY_SIZE)
        _set_transform(ds.pipeline, 'GenerateTarget', encoder=codec)


def _prepare_cls(cfg, data, tiny, batch):
    from mmhiri.datasets.classification import generate_classification
    classes = 4
    generate_classification(data, num_classes=classes, num_train=-(-max(batch, 4) // classes),
                            num_val=0, size=64 if tiny else 256, seed=0)
    pipeline = cfg.train_dataloader.dataset.pipeline
    cfg.train_dataloader.dataset = dict(type='CustomDataset', data_root=data,
                                        data_prefix='train', pipeline=pipeline)
    m = cfg.model
    m.backbone.init_cfg = None
    if tiny:
        c = _tiny('HIRIViT')['channels']
        m.backbone.arch = _tiny('HIRIViT')
        m.head.update(in_channels=c[-1], mid_channels=[2 * c[-1]])
        _set_transform(pipeline, 'RandomResizedCrop', scale=64)


def _mmdet_config(rel):
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise CheckFailed(f'mmdet {mmdet.__version__} does not ship configs/{rel}')
    return path


# (check name, config, data variant, prepare)
JOBS = (
    ('mask_rcnn_hiri_s_1x', 'configs/mask_rcnn_hiri_s_1x.py', 'instances',
     lambda c, d, t, b: _prepare_det(c, d, t, b, swin=False)),
    ('mmdet swin-t mask_rcnn_1x', 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 'instances',
     lambda c, d, t, b: _prepare_det(c, d, t, b, swin=True)),
    ('upernet_hiri_s_160k_ade20k', 'configs/upernet_hiri_s_160k_ade20k.py', 'semantic',
     _prepare_seg),
    ('simplebaseline_hiri_s_ap10k', 'configs/simplebaseline_hiri_s_ap10k.py', 'keypoints',
     _prepare_pose),
    ('hiri_s_224 (classifier)', 'configs/imagenet/hiri_s_224.py', 'classification', _prepare_cls),
)


def _probe_hook(device):
    """A Hook timing each training iteration and watching its loss and one parameter."""
    import torch
    from mmengine.hooks import Hook

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    class IterationProbe(Hook):
        priority = 'HIGHEST'  # after_train_iter: before the logger and the schedulers

        def __init__(self):
            self.times, self.losses, self.steps, self.input_hw = [], [], 0, (0, 0)

        def before_train(self, runner):
            model = getattr(runner.model, 'module', runner.model)
            params = [p for p in getattr(model, 'backbone', model).parameters()
                      if p.requires_grad] or [p for p in model.parameters() if p.requires_grad]
            self.param = max(params, key=lambda p: p.numel())
            self.prev = self.param.detach().clone()
            # the network's input: the data preprocessor's batch (padded, on the device)
            self.handle = model.data_preprocessor.register_forward_hook(self.record_input)

        def record_input(self, module, args, output):
            inputs = output.get('inputs') if isinstance(output, dict) else None
            if hasattr(inputs, 'shape') and inputs.dim() >= 3:
                self.input_hw = max(self.input_hw, tuple(int(s) for s in inputs.shape[-2:]))

        def after_train(self, runner):
            self.handle.remove()

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            sync()
            self.start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            sync()
            self.times.append(time.perf_counter() - self.start)
            loss = (outputs or {}).get('loss')
            self.losses.append(float(loss) if loss is not None else float('nan'))
            if not torch.equal(self.param, self.prev):
                self.steps += 1
                self.prev = self.param.detach().clone()

    return IterationProbe()


def _keep_iteration_schedulers(schedulers):
    if not schedulers:
        return schedulers
    items = schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]
    return [s for s in items if not s.get('by_epoch', True)] or None


def train_problems(ran: int, total: int, losses: List[float], steps: int,
                   loss_scale=None) -> List[str]:
    """What is wrong with a training run: iterations missing, a non-finite loss, or no
    optimizer step applied (the watched parameter never changed)."""
    problems = []
    if ran != total:
        problems.append(f'{ran} of {total} iterations ran')
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        problems.append(f'non-finite loss at iteration {bad[0]} ({len(bad)} of {len(losses)})')
    if steps == 0:
        problems.append('no optimizer step was applied in the whole run (every step skipped'
                        + (f', loss scale now {loss_scale:g})' if loss_scale is not None else ')'))
    return problems


def train_job(name, config, variant, prepare, args, work_dir, device):
    import gc

    import torch

    from mmhiri.apis import build_runner, load_config
    path = _mmdet_config(config.split('::', 1)[1]) if config.startswith('mmdet::') else \
        osp.join(ROOT, config)
    cfg = load_config(path)
    slug = ''.join(ch if ch.isalnum() else '_' for ch in name)
    job_dir = osp.join(work_dir, slug)
    loader = cfg.train_dataloader
    batch = args.batch or (2 if args.tiny else loader.batch_size)
    prepare(cfg, osp.join(work_dir, 'data', variant), args.tiny, batch)
    loader.batch_size = batch
    loader.sampler = dict(type='InfiniteSampler', shuffle=True)  # for the iteration loop
    if args.tiny or device == 'cpu':
        loader.num_workers, loader.persistent_workers = 0, False
    total = args.warmup + args.iters
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=total, val_interval=total + 1)
    cfg.param_scheduler = _keep_iteration_schedulers(cfg.get('param_scheduler'))
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'INFO' if args.verbose else 'WARNING'
    cfg.log_processor = dict(cfg.get('log_processor') or {}, by_epoch=False)
    cfg.randomness = dict(seed=0)
    runner = build_runner(cfg, path, work_dir=job_dir, amp=True, amp_dtype=args.amp_dtype,
                          no_validate=True, overwrite=True)
    probe = _probe_hook(device)
    runner.register_hook(probe)
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        runner.train()
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device == 'cuda' else None
        wrapper = runner.optim_wrapper  # built by train()
        dtype = getattr(wrapper, 'cast_dtype', None)
        amp = f'{type(wrapper).__name__} {str(dtype).replace("torch.", "") if dtype else ""}'
        scaler = getattr(wrapper, 'loss_scaler', None)
        scale = float(scaler.get_scale()) if hasattr(scaler, 'get_scale') else None
        del wrapper
    finally:
        del runner
        gc.collect()
        if device == 'cuda':
            torch.cuda.empty_cache()
    timed = probe.times[args.warmup:]
    data = dict(config=config, batch=batch, input_hw=list(probe.input_hw), amp=amp,
                iters=len(timed), warmup=args.warmup,
                iter_ms=statistics.median(timed) * 1e3 if timed else None,
                peak_mib=peak, steps=probe.steps, total_iters=len(probe.times),
                losses=probe.losses, loss_scale=scale)
    problems = train_problems(len(probe.times), total, probe.losses, probe.steps, scale)
    parts = [f'{"x".join(map(str, probe.input_hw))} x {batch}, {amp}']
    if timed:
        parts.append(f'{data["iter_ms"]:.0f} ms/iter')
    if peak is not None:
        parts.append(f'peak {peak / 1024:.2f} GiB')
    parts.append(f'{probe.steps}/{len(probe.times)} steps')
    if probe.losses:
        parts.append(f'last loss {probe.losses[-1]:.3f}')
    text = ', '.join(parts)
    if problems:
        err = CheckFailed('; '.join(problems))
        err.data = data
        raise err
    return text, data


def run_train(report: Report, args, work_dir, device):
    import warnings
    kind = ('AmpOptimWrapper ' + (args.amp_dtype or 'fp16') +
            (' with dynamic loss scaling' if (args.amp_dtype or 'fp16') == 'fp16' else '')
            if device == 'cuda' else 'CPUAutocastOptimWrapper bf16')
    report.print(f'[train] --amp ({kind}), {args.warmup} warm-up + {args.iters} timed '
                 f'iterations per job, generated data' + (', tiny widths' if args.tiny else ''))
    import torch
    benchmark = torch.backends.cudnn.benchmark  # a config's env_cfg may switch it on for good
    for name, config, variant, prepare in JOBS:
        torch.backends.cudnn.benchmark = benchmark  # each job under its own config's setting
        # quiet unless --verbose: warnings, and what mmengine and pycocotools print
        with warnings.catch_warnings(), contextlib.redirect_stdout(
                sys.stdout if args.verbose else io.StringIO()):
            if not args.verbose:
                warnings.simplefilter('ignore')
            report.run('train', name,
                       lambda: train_job(name, config, variant, prepare, args, work_dir, device))
    torch.backends.cudnn.benchmark = benchmark


# --------------------------------------------------------------------------- summary

def environment(device):
    import torch
    env = dict(python=platform.python_version(), torch=torch.__version__,
               torch_cuda=torch.version.cuda, cpu=_cpu_name(), cpus=os.cpu_count())
    from importlib import metadata
    for pkg, dist in (('mmengine', 'mmengine'), ('mmcv', 'mmcv'), ('mmdet', 'mmdet'),
                      ('mmseg', 'mmsegmentation'), ('mmpose', 'mmpose'),
                      ('mmpretrain', 'mmpretrain')):
        try:  # the installed versions, without importing the frameworks
            env[pkg] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # reported; the checks that need it fail
            env[pkg] = 'not installed'
    if device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f'{props.major}.{props.minor}',
                   gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   gpus=torch.cuda.device_count())
    return env


def _cpu_name():
    from mmhiri.utils.machine import cpu_name
    return cpu_name()


def _header(env, device):
    where = (f'cuda: {env["gpu"]} (sm_{env["capability"].replace(".", "")}, '
             f'{env["gpu_memory_gib"]} GiB)' if device == 'cuda' else
             f'cpu: {env["cpu"]}, {env["cpus"]} cores')
    return (f'{where} | torch {env["torch"]} (CUDA {env["torch_cuda"]}) | mmcv {env["mmcv"]} | '
            f'mmdet {env["mmdet"]} mmseg {env["mmseg"]} mmpose {env["mmpose"]} '
            f'mmpretrain {env["mmpretrain"]}')


def summary_lines(report: Report, env, device, seconds):
    lines = ['', '=' * 30 + ' summary ' + '=' * 30, _header(env, device)]
    for section in SECTIONS:
        rs = [r for r in report.results if r['section'] == section]
        if not rs:
            continue
        counts = ', '.join(f'{sum(r["status"] == s for r in rs)} {s}' for s in
                           ('PASS', 'FAIL', 'SKIP') if any(r['status'] == s for r in rs))
        lines.append(f'{section:<9} {counts}')
    jobs = [r for r in report.results if r['section'] == 'train']
    if jobs:
        lines.append(f'  {"job":<30} {"input x batch":>15} {"iter (median)":>14} '
                     f'{"peak GPU mem":>13} {"steps":>6}  status')
        for r in jobs:
            hw = r.get('input_hw') or [0, 0]
            size = f'{hw[0]}x{hw[1]} x {r["batch"]}' if 'batch' in r else '-'
            ms = f'{r["iter_ms"]:.1f} ms' if r.get('iter_ms') is not None else '-'
            mem = f'{r["peak_mib"] / 1024:.2f} GiB' if r.get('peak_mib') is not None else \
                ('n/a (CPU)' if device == 'cpu' and 'batch' in r else '-')
            steps = f'{r["steps"]}/{r["total_iters"]}' if 'steps' in r else '-'
            lines.append(f'  {r["name"]:<30} {size:>15} {ms:>14} {mem:>13} {steps:>6}  '
                         f'{r["status"]}')
    failed = report.failed()
    for r in failed:
        lines.append(f'FAIL {r["check"]}: {r["reason"]}')
    n = len(report.results)
    verdict = 'FAIL' if failed else 'PASS'
    skipped = sum(r['status'] == 'SKIP' for r in report.results)
    lines.append(f'RESULT: {verdict} ({n - len(failed) - skipped} of {n} checks passed, '
                 f'{len(failed)} failed, {skipped} skipped) in {seconds:.0f} s')
    return lines


# --------------------------------------------------------------------------- main

def main(argv=None, out=None) -> int:
    args = parse_args(argv)
    out = out or sys.stdout
    if args.device == 'cpu' and 'torch' not in sys.modules:
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # everything (mmengine included) on the CPU
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        print(f'gpu_check.py: error: --device cuda: torch {torch.__version__} (CUDA '
              f'{torch.version.cuda}) sees no CUDA GPU; run it on the GPU machine, or use '
              '--device cpu --tiny to exercise the check on CPU', file=sys.stderr)
        return 2
    sys.path.insert(0, ROOT)
    start = time.perf_counter()
    report = Report(args.fail_check, args.verbose, out)
    env = environment(args.device)
    report.print(f'mmhiri GPU check on {_header(env, args.device)}')
    if args.device == 'cpu' and not args.tiny and 'train' in args.only:
        report.print('note: --device cpu without --tiny trains at the real sizes on CPU (slow)')
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='mmhiri_gpu_check_')
    os.makedirs(work_dir, exist_ok=True)
    try:
        if 'ops' in args.only:
            run_ops(report, args.device)
        if 'families' in args.only:
            run_families(report, args.device, args.tiny)
        if 'train' in args.only:
            run_train(report, args, work_dir, args.device)
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.perf_counter() - start
    report.print(*summary_lines(report, env, args.device, seconds))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(passed=not report.failed(), device=args.device, tiny=args.tiny,
                           amp_dtype=args.amp_dtype, iters=args.iters, warmup=args.warmup,
                           seconds=round(seconds, 1), environment=env,
                           thresholds=dict(families=THRESHOLDS, fp16_loss_scale=FP16_LOSS_SCALE,
                                           zero_grad_rms=ZERO_GRAD_RMS),
                           checks=report.results), f, indent=1)
    return 1 if report.failed() else 0


if __name__ == '__main__':
    sys.exit(main())
