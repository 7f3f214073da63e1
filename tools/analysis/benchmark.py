"""Inference throughput, latency and peak memory of the model a config builds.

    python tools/analysis/benchmark.py CONFIG [--shape H W] [--batch N] [--device cpu|cuda]
        [--warmup K] [--repeats R] [--iters I] [--backbone-only] [--threads T] [--json FILE]
        [--cfg-options k=v ...]
    python tools/analysis/benchmark.py --side-by-side [...]   # ours vs Swin-T, PVTv2-B2,
                                                # ConvNeXt-T, engine by engine (side_by_side.py)

What runs: the model built as ``get_flops.py`` builds it (no pretrained weights; random
weights do not change the cost), in eval mode under ``torch.no_grad()``, called in
``mode='tensor'`` on a random ``N x 3 x H x W`` input (H, W padded to the preprocessor's
``pad_size_divisor``): backbone, neck and heads up to their raw outputs. Not included: data
loading and the data preprocessor (normalisation, padding), and the final post-processing
(box decoding + NMS, mask pasting, segmentation resizing, keypoint decoding). Two-stage detectors
do include the RPN's proposal selection, which their RoI heads need (as mmdet's ``_forward``).
``--backbone-only`` times ``model.backbone(x)`` alone.

Timing: ``--warmup`` iterations first (excluded), then ``--repeats`` runs of ``--iters``
iterations each; every run gives a latency (ms per batch = run time / iters) and a throughput
(images/s = N x iters / run time). Reported: median and min-max over the runs. On CUDA the
device is synchronised around each run.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` (tensors held by the caching
allocator) over warm-up and timed runs, in total and above what the model and input already
held. On CPU, the process's peak resident set size from ``resource.getrusage`` (``ru_maxrss``)
after the runs, in total and as its growth over the peak before the first forward (the model
and input built): the growth is the activations' and workspaces' high-water mark as the OS saw
it (allocator reuse and earlier peaks make it a lower bound).
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))
sys.path.insert(0, HERE)

from mmengine.config import DictAction  # noqa: E402

MODE = ("mode='tensor' (backbone + neck + heads, raw outputs; no data preprocessor, no "
        'post-processing/NMS)')


def parse_args(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if '--side-by-side' in argv:
        return parse_side_by_side([a for a in argv if a != '--side-by-side'])
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default: 224 224 for classifiers, 1200 1600 for '
                        'detectors, 512 512 for segmentors, 256 256 for pose models)')
    parser.add_argument('--batch', type=int, default=1, help='images per forward (default 1)')
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        help='default: cuda if available, else cpu')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed iterations first (default 3)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs (default 5)')
    parser.add_argument('--iters', type=int, default=10,
                        help='forwards per timed run (default 10)')
    parser.add_argument('--backbone-only', action='store_true', help='time the backbone alone')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--json', metavar='FILE', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    for name in ('batch', 'repeats', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA GPU is available to torch '
                     '(torch.cuda.is_available() is False); use --device cpu')
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    return args


def parse_side_by_side(argv):
    import side_by_side
    parser = argparse.ArgumentParser(
        prog='benchmark.py --side-by-side', description=side_by_side.__doc__.split('\n\n')[0],
        epilog='See tools/analysis/side_by_side.py for what is timed and how.')
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 448, 896])
    parser.add_argument('--rounds', type=int, default=5, help='interleaved rounds (default 5)')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    parser.add_argument('--device', choices=['cpu', 'cuda'])
    parser.add_argument('--amp', choices=['bf16', 'fp16'], help='autocast dtype (default fp32)')
    parser.add_argument('--engines', nargs='+', default=list(side_by_side.DEFAULT_ENGINES),
                        choices=list(side_by_side.ENGINES),
                        help='engines to time (default: ' + ' '.join(
                            side_by_side.DEFAULT_ENGINES) + ')')
    parser.add_argument('--compile', action='store_true',
                        help='add the torch.compile engine (same as listing "compiled")')
    parser.add_argument('--malloc', choices=['tuned', 'default'], default='tuned')
    parser.add_argument('--train-step', action='store_true',
                        help='add training-step time and peak memory at high resolution')
    parser.add_argument('--only', nargs='+', choices=list(side_by_side.MODELS),
                        help='a subset of the models')
    parser.add_argument('--out', help='write the markdown report here too')
    parser.add_argument('--json', help='write the raw results here')
    parser.add_argument('--report-from', metavar='JSON',
                        help='measure nothing: print (and with --out, write) the report of '
                        'a run saved with --json')
    args = parser.parse_args(argv)
    if args.report_from and not osp.isfile(args.report_from):
        parser.error(f'--report-from: no file {args.report_from!r} (a --json result file)')
    args.amp = {'bf16': 'bfloat16', 'fp16': 'float16'}.get(args.amp)
    if args.compile and 'compiled' not in args.engines:
        args.engines = list(args.engines) + ['compiled']
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA GPU is available to torch; use --device cpu')
    if args.rounds < 1 or args.threads < 1:
        parser.error('--rounds and --threads must be >= 1')
    args.side_by_side = True
    args.argv = list(argv)
    return args


def cpu_name():
    from mmhiri.utils.machine import cpu_name as name
    return name()


def maxrss_mib():
    # Linux reports KiB, macOS bytes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 ** 2 if sys.platform == 'darwin' else rss / 1024


def summary(values):
    return dict(median=statistics.median(values), min=min(values), max=max(values),
                runs=values)


def benchmark(args):
    import torch

    from get_flops import build_model, prepare_inputs
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, cfg, scope = build_model(args.config, args.cfg_options)
    model.to(device)
    x, (h, w), div = prepare_inputs(model, cfg, scope, args.shape, args.batch, device)
    target = model.backbone if args.backbone_only else model
    params = sum(p.numel() for p in target.parameters()) / 1e6

    cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device) / 1024 ** 2
    else:
        held = maxrss_mib()

    latencies, throughputs = [], []
    with torch.no_grad():
        for _ in range(args.warmup):
            target(x)
        sync()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.iters):
                target(x)
            sync()
            elapsed = time.perf_counter() - t0
            latencies.append(1000 * elapsed / args.iters)
            throughputs.append(args.batch * args.iters / elapsed)

    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 1024 ** 2
        memory = dict(method='torch.cuda.max_memory_allocated', peak_mib=peak,
                      above_model_mib=peak - held)
        device_name = torch.cuda.get_device_name(device)
    else:
        peak = maxrss_mib()
        memory = dict(method='resource.getrusage ru_maxrss (process peak RSS)', peak_mib=peak,
                      above_model_mib=peak - held)
        device_name = f'{cpu_name()}, {torch.get_num_threads()} torch threads'
    ph, pw = x.shape[2:]
    return dict(
        config=args.config, scope=scope,
        model=type(target).__name__ + (' (backbone only)' if args.backbone_only else ''),
        params_m=params, mode=MODE if not args.backbone_only else 'model.backbone(x)',
        input=[args.batch, 3, ph, pw], requested_shape=[h, w], pad_size_divisor=div,
        device=device.type, device_name=device_name, torch=torch.__version__,
        warmup=args.warmup, repeats=args.repeats, iters=args.iters,
        latency_ms=summary(latencies), throughput_img_s=summary(throughputs), memory=memory)


def report(r):
    (n, _, ph, pw), (h, w) = r['input'], r['requested_shape']
    lines = [
        f'config: {r["config"]} ({r["scope"]})',
        f'model: {r["model"]}, {r["params_m"]:.2f} M params; forward: {r["mode"]}, '
        'eval, no_grad',
        f'input: {n}x3x{ph}x{pw}' + (f' (from {h}x{w}, padded to /{r["pad_size_divisor"]})'
                                     if (ph, pw) != (h, w) else ''),
        f'device: {r["device"]} ({r["device_name"]}); torch {r["torch"]}',
        f'{r["warmup"]} warm-up iterations excluded; {r["repeats"]} runs x {r["iters"]} '
        'iterations',
        '',
        '| metric | median | min | max |',
        '|---|---|---|---|',
    ]
    for key, label, f in (('throughput_img_s', 'throughput (img/s)', '.2f'),
                          ('latency_ms', 'latency (ms/batch)', '.1f')):
        s = r[key]
        lines.append(f'| {label} | {s["median"]:{f}} | {s["min"]:{f}} | {s["max"]:{f}} |')
    m = r['memory']
    lines += ['', f'peak memory: {m["peak_mib"]:.0f} MiB, {m["above_model_mib"]:.0f} MiB above '
              f'the model and input ({m["method"]})']
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if getattr(args, 'side_by_side', False):
        import side_by_side
        side_by_side.run(args)
        return
    r = benchmark(args)
    print(report(r))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(r, f, indent=2)


if __name__ == '__main__':
    main()
