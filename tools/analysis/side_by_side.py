"""Side-by-side speed and memory of our backbones and the ones a user would pick instead.

    python tools/analysis/benchmark.py --side-by-side [--sizes 224 448 896] [--rounds 5]
        [--threads 2] [--device cpu|cuda] [--amp bf16|fp16] [--compile] [--malloc tuned|default]
        [--train-step] [--only NAME ...] [--out docs/benchmark.md] [--json FILE]

Everything is built from its stock detection config (``init_cfg`` dropped: random weights do not
change the cost) and timed **in one process, in interleaved rounds**: every round runs every
(model, variant, size) once, so a slow spell of a shared machine hits all of them alike. The
figures are medians over the rounds, with min-max; the ratios are what a user compares.

Models (backbone alone, eval, ``no_grad``, batch 1):

* ours: HIRI-ViT-S and ViTAEv2-S, each as ``explicit`` (the attention product written out and
  stock BN + activation autograd: the implementation before the fast paths, reachable with
  ``fused_attn=False, memory_efficient=False``), ``eager`` (the defaults),
  ``deploy`` (``switch_to_deploy()``: BatchNorms folded, channels-last; on CPU oneDNN linears,
  oneDNN attention on long rows, explicit on windows, reducing grouped convs transposed)
  and, with ``--compile``, ``compiled`` (``torch.compile(dynamic=False)`` of the deploy model,
  inductor's ``freezing`` on);
* references: mmdet's Swin-T and PVTv2-B2 and mmpretrain's ConvNeXt-T, eager, at the settings of
  their stock mmdet configs.

``--train-step`` adds one forward + backward (sum of the outputs' means) at a high resolution,
three times each (medians; explicit and default alternate), each in a fresh process (a
process's peak RSS only grows) with glibc's default malloc (the tuned heap below keeps freed
blocks, and its fragmentation inflates peak RSS): time and peak memory above the built model,
for ViTAEv2-S at 896² and HIRI-ViT-S at 1344², ``explicit`` vs ``default`` (fused attention,
BN + activation recomputation).

Allocator (CPU): glibc's default malloc returns every block above 32 MiB to the OS on free and
page-faults it in again on the next call, so the same eager forward ran up to ~40% slower
(measured, README). ``--malloc tuned`` (the default) re-executes the benchmark with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``: blocks stay in the heap and are reused. It
applies to every model alike and is printed with the results; ``--malloc default`` keeps the
environment as it is.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TUNED_MALLOC = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(64 << 30)}

# (name, config, scope): the backbone of each stock detection config
MODELS = {
    'HIRI-ViT-S': (os.path.join(ROOT, 'configs', 'mask_rcnn_hiri_s_1x.py'), 'mmdet'),
    'ViTAEv2-S': (os.path.join(ROOT, 'configs', 'mask_rcnn_vitaev2_s_1x.py'), 'mmdet'),
    'Swin-T': ('mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 'mmdet'),
    'PVTv2-B2': ('mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py', 'mmdet'),
    'ConvNeXt-T': ('mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py',
                   'mmdet'),
}
OURS = ('HIRI-ViT-S', 'ViTAEv2-S')
# (numerator, denominator) pairs of (model, variant, size) that the report prints as ratios
TRAIN_CASES = [('ViTAEv2-S', 896), ('HIRI-ViT-S', 1344)]


def apply_malloc(mode):
    """Re-execute this process with the tuned glibc malloc settings (once)."""
    if mode != 'tuned' or all(os.environ.get(k) == v for k, v in TUNED_MALLOC.items()):
        return
    env = dict(os.environ, **TUNED_MALLOC)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def build_backbone(name, fused=True):
    """The backbone of ``MODELS[name]``'s config, eval mode, random weights."""
    from mmhiri.apis import build_in_scope, load_config
    config, _ = MODELS[name]
    if '::' in config:  # a config shipped inside the framework's package
        pkg, rel = config.split('::')
        config = os.path.join(os.path.dirname(__import__(pkg).__file__), '.mim', 'configs', rel)
    cfg = load_config(config)
    bcfg = cfg.model.backbone
    bcfg.pop('init_cfg', None)
    if bcfg.get('type', '').split('.')[-1] == 'SwinTransformer':
        bcfg['convert_weights'] = False  # only matters for loading a checkpoint
    model = build_in_scope(cfg, bcfg)
    model.eval()  # (mmdet's Swin.train returns None: no chaining)
    if hasattr(model, 'set_fused_attn'):  # ours: explicit = the implementation before both
        model.set_fused_attn(fused)
        model.set_memory_efficient(fused)
    return model


def variants(name, compile_):
    if name not in OURS:
        return ['eager']
    return ['explicit', 'eager', 'deploy'] + (['compiled'] if compile_ else [])


def make_variant(name, variant, device):
    import torch
    model = build_backbone(name, fused=variant != 'explicit').to(device)
    if variant in ('deploy', 'compiled'):
        model.switch_to_deploy()
    if variant == 'compiled':
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True  # weights are constants: folded and pre-packed
        model = torch.compile(model, dynamic=False)  # one static graph per input size
    return model


def timed_rounds(cases, rounds, device, amp):
    """``cases``: {key: (model, input)}. Returns {key: [seconds per forward, one per round]}."""
    import torch
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    ctx = (lambda: torch.autocast(device.type, dtype=getattr(torch, amp))) if amp else \
        (lambda: torch.autocast(device.type, enabled=False))
    iters, times = {}, {k: [] for k in cases}
    with torch.no_grad(), ctx():
        for key, (model, x) in cases.items():  # warm-up (and compile); pick iterations
            model(x)
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            once = time.perf_counter() - t0
            iters[key] = max(1, min(50, round(0.5 / max(once, 1e-4))))
            print(f'  warm: {key[0]} {key[1]} {key[2]}: {once * 1000:.1f} ms, '
                  f'{iters[key]} per round', flush=True)
        for r in range(rounds):
            for key, (model, x) in cases.items():
                sync()
                t0 = time.perf_counter()
                for _ in range(iters[key]):
                    model(x)
                sync()
                times[key].append((time.perf_counter() - t0) / iters[key])
            print(f'  round {r + 1}/{rounds} done', flush=True)
    return times


def peak_rss_mib():
    """This process's peak resident set. Linux: ``VmHWM`` of /proc/self/status, which starts
    afresh at exec (``ru_maxrss`` keeps the parent's peak across fork + exec)."""
    import resource
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == 'darwin' else rss / 1024


TRAIN_REPEATS = 3  # fresh processes per training-step case: one peak RSS varied by ~7%


def train_step(name, size, fused, threads, device):
    """One forward + backward in this process: (seconds, peak MiB above the built model)."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_backbone(name, fused=fused).to(device)
    model.train()
    x = torch.rand(1, 3, size, size, device=device)
    cuda = device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = peak_rss_mib()
    t0 = time.perf_counter()
    outs = model(x)
    sum(o.mean() for o in outs).backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib()
    return time.perf_counter() - t0, peak - base


def train_step_subprocess(name, size, fused, threads, device):
    code = ('import sys, json; sys.path.insert(0, %r); from side_by_side import train_step; '
            'import torch; print("RESULT", json.dumps(train_step(%r, %d, %r, %d, '
            'torch.device(%r))))' % (HERE, name, size, fused, threads, device))
    # glibc's default malloc here: the tuned heap keeps freed blocks, and its fragmentation
    # would inflate the peak RSS that this measures
    env = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=ROOT, env=env)
    for line in out.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    raise RuntimeError(f'training step {name} {size} failed:\n{out.stderr[-2000:]}')


def fmt(v, f='.2f'):
    return format(v, f)


def run(args):
    import torch

    from benchmark import cpu_name
    apply_malloc(args.malloc)
    sys.path.insert(0, ROOT)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
    names = [n for n in MODELS if not args.only or n in args.only]
    train_steps = {}
    if args.train_step:  # first, while this process is small
        for name, size in TRAIN_CASES:
            if name not in names:
                continue
            runs = {False: [], True: []}
            for _ in range(TRAIN_REPEATS):  # explicit and default alternate
                for fused in (False, True):
                    sec, mib = train_step_subprocess(name, size, fused, args.threads,
                                                     str(device))
                    runs[fused].append((sec, mib))
                    print(f'  train step {name} {size}² {"default" if fused else "explicit"}: '
                          f'{sec:.2f} s, +{mib:.0f} MiB', flush=True)
            for fused, rs in runs.items():
                train_steps[f'{name}|{size}|{"default" if fused else "explicit"}'] = dict(
                    seconds=statistics.median(r[0] for r in rs),
                    peak_mib=statistics.median(r[1] for r in rs),
                    peak_mib_all=[r[1] for r in rs])
    cases = {}
    for name in names:
        for variant in variants(name, args.compile):
            model = make_variant(name, variant, device)
            for size in args.sizes:
                x = torch.rand(1, 3, size, size, device=device)
                cases[(name, variant, size)] = (model, x)
    print(f'{len(cases)} cases, {args.rounds} interleaved rounds', flush=True)
    times = timed_rounds(cases, args.rounds, device, args.amp)
    thr = {k: sorted(1 / t for t in v) for k, v in times.items()}
    result = dict(
        machine=cpu_name() if device.type == 'cpu' else torch.cuda.get_device_name(device),
        device=device.type, threads=torch.get_num_threads() if device.type == 'cpu' else None,
        amp=args.amp, malloc={k: os.environ.get(k) for k in TUNED_MALLOC},
        versions=versions(), rounds=args.rounds, argv=args.argv,
        throughput={'|'.join(map(str, k)): dict(median=statistics.median(v), min=v[0],
                                                max=v[-1]) for k, v in thr.items()},
        train_step=train_steps)
    text = report(result, args)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


def versions():
    import torch
    out = {'torch': torch.__version__, 'python': platform.python_version()}
    for pkg in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain'):
        try:
            out[pkg] = __import__(pkg).__version__
        except ImportError:
            pass
    return out


def ratio_rows(result):
    """(label, numerator key, denominator key) for the ratios a user compares."""
    t = result['throughput']
    rows = []
    for v in ('explicit', 'eager', 'deploy', 'compiled'):
        for hi, lo in ((448, 224), (896, 448)):
            a, b = f'HIRI-ViT-S|{v}|{hi}', f'Swin-T|eager|{lo}'
            if a in t and b in t:
                rows.append((f'HIRI-ViT-S {v} at {hi} ÷ Swin-T at {lo}', a, b))
    for v in ('eager', 'deploy', 'compiled'):
        for s in (224, 448, 896):
            a, b = f'ViTAEv2-S|{v}|{s}', f'ViTAEv2-S|explicit|{s}'
            if a in t and b in t:
                rows.append((f'ViTAEv2-S {v} ÷ explicit at {s}', a, b))
    for v in ('eager', 'deploy', 'compiled'):
        for s in (224, 448, 896):
            a, b = f'HIRI-ViT-S|{v}|{s}', f'HIRI-ViT-S|explicit|{s}'
            if a in t and b in t:
                rows.append((f'HIRI-ViT-S {v} ÷ explicit at {s}', a, b))
    return rows


def report(result, args):
    t = result['throughput']
    sizes = sorted({int(k.split('|')[2]) for k in t})
    amp = f', autocast {result["amp"]}' if result['amp'] else ', fp32'
    lines = [
        '# Side-by-side benchmark',
        '',
        'Written by `python tools/analysis/benchmark.py --side-by-side '
        + ' '.join(result.get('argv', [])) + '` (see `tools/analysis/side_by_side.py` for '
        'what is timed and how). Variants of ours: `explicit` = attention product written '
        'out and stock BN + activation autograd (the implementation before the fast paths: '
        '`fused_attn=False, memory_efficient=False`); `eager` = the defaults (fused '
        'attention); `deploy` = `switch_to_deploy()` (BatchNorms folded, channels-last; on CPU '
        'oneDNN linears, attention through oneDNN on long rows and written out on 7x7 windows, '
        'channel-reducing grouped convs in transposed form); `compiled` = `torch.compile(dynamic=False)` of the deploy model with '
        'inductor `freezing`. References: the backbones of mmdet\'s stock Swin-T Mask R-CNN, '
        'PVTv2-B2 RetinaNet and ConvNeXt-T Mask R-CNN configs, eager.',
        '',
        f'Device: {result["device"]} ({result["machine"]}'
        + (f', {result["threads"]} torch threads' if result['threads'] else '') + f'){amp}; '
        + ', '.join(f'{k} {v}' for k, v in result['versions'].items()) + '.',
        f'malloc: {", ".join(f"{k}={v}" for k, v in result["malloc"].items() if v) or "glibc defaults"}. '
        f'Backbone alone, batch 1, eval, no_grad; {result["rounds"]} interleaved rounds, '
        'median (min-max).',
        '',
        '| model | variant | ' + ' | '.join(f'{s}² img/s' for s in sizes) + ' |',
        '|---|---|' + '---|' * len(sizes),
    ]
    seen = []
    for key in t:
        name, variant, _ = key.split('|')
        if (name, variant) in seen:
            continue
        seen.append((name, variant))
        cells = []
        for s in sizes:
            r = t.get(f'{name}|{variant}|{s}')
            cells.append(f'{r["median"]:.2f} ({r["min"]:.2f}–{r["max"]:.2f})' if r else '–')
        lines.append(f'| {name} | {variant} | ' + ' | '.join(cells) + ' |')
    rows = ratio_rows(result)
    if rows:
        lines += ['', '| ratio of throughputs (medians) | value |', '|---|---|']
        for label, a, b in rows:
            lines.append(f'| {label} | {t[a]["median"] / t[b]["median"]:.2f} |')
    if result.get('train_step'):
        lines += ['', f'Training step (forward + backward, batch 1, a fresh process each, '
                  f'medians of {TRAIN_REPEATS} alternating runs; memory: '
                  + ('peak allocated' if result['device'] == 'cuda' else
                     "peak RSS, glibc's default malloc,")
                  + ' above the built model):', '',
                  '| model | input | variant | step (s) | peak memory (MiB) | memory ÷ explicit |',
                  '|---|---|---|---|---|---|']
        ts = result['train_step']
        for key, r in ts.items():
            name, size, attn = key.split('|')
            ref = ts.get(f'{name}|{size}|explicit')
            ratio = f'{r["peak_mib"] / ref["peak_mib"]:.2f}' if ref and ref['peak_mib'] > 0 \
                else '–'
            lines.append(f'| {name} | {size}² | {attn} | {r["seconds"]:.2f} | '
                         f'{r["peak_mib"]:.0f} | {ratio} |')
    return '\n'.join(lines)
