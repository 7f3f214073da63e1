"""Side-by-side speed of our backbones and the ones a user would pick instead, engine by engine.

    python tools/analysis/benchmark.py --side-by-side [--sizes 224 448 896] [--rounds 5]
        [--threads 2] [--engines eager runtime onnxruntime openvino openvino-bf16 ...]
        [--device cpu|cuda] [--amp bf16|fp16] [--malloc tuned|default] [--train-step]
        [--only NAME ...] [--out docs/benchmark.md] [--json FILE]
    python tools/analysis/benchmark.py --side-by-side --report-from FILE [--out FILE]

Every model is built from its stock detection config (``init_cfg`` dropped: random weights do
not change the cost) and every case is timed **in one process, in interleaved rounds**: each
round runs every (model, engine, size) once, so a slow spell of a shared machine hits all of
them alike. Figures are medians over the rounds, with min-max; ratios are what a user compares.

Engines (the columns; each compares models through the same engine):

* ``eager`` - PyTorch eager, fp32, the models' defaults (ours: fused attention);
* ``explicit`` (ours only) - the attention product written out and stock BN + activation
  autograd: the implementation before the fast paths (``fused_attn=False,
  memory_efficient=False``);
* ``runtime`` (ours only) - PyTorch with :func:`mmhiri.runtime.optimize` (BatchNorms folded;
  attention product, linear/conv kernels and memory layout chosen by timing them here);
* ``compiled`` - ``torch.compile(dynamic=False)`` with inductor ``freezing`` (ours: of the
  folded model);
* ``torch-bf16`` - PyTorch eager under ``torch.autocast(dtype=bfloat16)``;
* ``onnxruntime`` - the folded model exported to ONNX (``mmhiri.runtime.engines``), run by
  ONNX Runtime's CPU provider, fp32;
* ``openvino`` / ``openvino-bf16`` - the same ONNX file compiled by OpenVINO for the CPU with
  inference precision f32 / bf16.

The header names the CPU and its measured ceiling (the best of a 3x3 convolution and a matrix
product, multiply-adds per second, in fp32 and in bf16, with this many threads); every case
also gets its multiply-adds per second (the backbone's count from mmengine's FlopAnalyzer at
that size x images/s) as a fraction of the ceiling of its precision. ``--out`` keeps one
section per machine in the file: a run replaces its own machine's section and leaves the
others.

``--train-step`` adds one forward + backward (sum of the outputs' means) at a high resolution,
three times each (medians; explicit and default alternate), each in a fresh process (a
process's peak RSS only grows) with glibc's default malloc: time and peak memory above the
built model, for ViTAEv2-S at 896² and HIRI-ViT-S at 1344².

Allocator (CPU): glibc's default malloc returns every block above 32 MiB to the OS on free and
page-faults it in again on the next call. ``--malloc tuned`` (the default) re-executes the
benchmark with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``: blocks stay in the heap and
are reused. It applies to every model alike and is printed with the results.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
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
# HIRI-ViT-S at 2x the side against Swin-T (sizes), and the ratio the README measures it by
PAIRS = ((448, 224), (896, 448))
TARGET_RATIO = 1.25
ENGINES = ('explicit', 'eager', 'runtime', 'compiled', 'torch-bf16', 'onnxruntime', 'openvino',
           'openvino-bf16')
OURS_ONLY = ('explicit', 'runtime')
CPU_ONLY = ('onnxruntime', 'openvino', 'openvino-bf16')
BF16_ENGINES = ('torch-bf16', 'openvino-bf16')
DEFAULT_ENGINES = ('explicit', 'eager', 'runtime', 'torch-bf16', 'onnxruntime', 'openvino',
                   'openvino-bf16')
TRAIN_CASES = [('ViTAEv2-S', 896), ('HIRI-ViT-S', 1344)]
TRAIN_REPEATS = 3  # fresh processes per training-step case: one peak RSS varied by ~7%


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


def engines_for(name, engines):
    return [e for e in engines if name in OURS or e not in OURS_ONLY]


class Case:
    """A callable running one (model, engine) at one input; ``dtype`` is its precision."""

    def __init__(self, fn, dtype='fp32'):
        self.fn, self.dtype = fn, dtype

    def __call__(self, x):
        return self.fn(x)


def make_cases(name, engines, sizes, device, work_dir, log=print):
    """{(engine, size): (Case, input)} for model ``name``."""
    import copy

    import torch
    cases = {}
    eager = build_backbone(name).to(device)
    folded = copy.deepcopy(eager)
    if hasattr(folded, 'switch_to_deploy'):
        folded.switch_to_deploy()
    onnx_paths = {}
    for engine in engines_for(name, engines):
        for size in sizes:
            x = torch.rand(1, 3, size, size, device=device)
            if engine == 'eager':
                case = Case(eager)
            elif engine == 'explicit':
                case = Case(build_backbone(name, fused=False).to(device)) if size == sizes[0] \
                    else cases[('explicit', sizes[0])][0]
            elif engine == 'runtime':
                from mmhiri.runtime import optimize
                runtime = cases.get(('runtime', sizes[0]), (None, ))[0]
                if runtime is None:
                    runtime = Case(optimize(copy.deepcopy(eager), layout='auto'))
                optimize(runtime.fn, example=x, fold=False)  # choices for this size too
                case = runtime
            elif engine == 'compiled':
                import torch._inductor.config as inductor_config
                inductor_config.freezing = True  # weights are constants: folded, pre-packed
                compiled = cases.get(('compiled', sizes[0]), (None, ))[0]
                case = compiled or Case(torch.compile(folded, dynamic=False))
            elif engine == 'torch-bf16':
                case = Case(lambda t, m=eager: m(t), 'bf16')
                case.autocast = 'bfloat16'
            else:
                from mmhiri.runtime.engines import (OnnxRuntimeEngine, OpenVINOEngine,
                                                    export_onnx)
                if size not in onnx_paths:
                    path = os.path.join(work_dir, f'{name}_{size}.onnx')
                    seconds = export_onnx(folded, path, (size, size), dynamic=False)
                    log(f'  exported {name} at {size}² in {seconds:.1f} s')
                    onnx_paths[size] = path
                threads = torch.get_num_threads()
                if engine == 'onnxruntime':
                    case = Case(OnnxRuntimeEngine(onnx_paths[size], threads))
                else:
                    precision = 'bf16' if engine == 'openvino-bf16' else 'fp32'
                    case = Case(OpenVINOEngine(onnx_paths[size], precision, threads), precision)
            cases[(engine, size)] = (case, x)
    return cases


def timed_rounds(cases, rounds, device, amp):
    """``cases``: {key: (Case, input)}. Returns {key: [seconds per forward, one per round]}."""
    import contextlib

    import torch
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def ctx(case):
        dtype = getattr(case, 'autocast', None) or amp
        if dtype:
            return torch.autocast(device.type, dtype=getattr(torch, dtype))
        return contextlib.nullcontext()

    iters, times = {}, {k: [] for k in cases}
    with torch.no_grad():
        for key, (case, x) in cases.items():  # warm-up (compile, choices); pick iterations
            with ctx(case):
                case(x)
                sync()
                t0 = time.perf_counter()
                case(x)
                sync()
            once = time.perf_counter() - t0
            iters[key] = max(1, min(50, round(0.5 / max(once, 1e-4))))
            print(f'  warm: {" ".join(map(str, key))}: {once * 1000:.1f} ms, '
                  f'{iters[key]} per round', flush=True)
        for r in range(rounds):
            for key, (case, x) in cases.items():
                with ctx(case):
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(iters[key]):
                        case(x)
                    sync()
                times[key].append((time.perf_counter() - t0) / iters[key])
            print(f'  round {r + 1}/{rounds} done', flush=True)
    return times


def ceiling(threads, repeats=5):
    """This machine's multiply-adds per second (G) in fp32 and bf16: the best of a 3x3
    convolution (256 -> 256 channels, 56x56, channels-last: oneDNN) and a 2048^3 matrix
    product, with ``threads`` threads."""
    import torch
    torch.set_num_threads(threads)
    out = {}
    for dtype, label in ((torch.float32, 'fp32'), (torch.bfloat16, 'bf16')):
        x = torch.randn(1, 256, 56, 56, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        jobs = {'conv': (lambda: torch.nn.functional.conv2d(x, w, padding=1),
                         56 * 56 * 256 * 256 * 9),
                'matmul': (lambda: a @ b, 2048 ** 3)}
        for kind, (fn, macs) in jobs.items():
            with torch.no_grad():
                fn()
                best = float('inf')
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
            out[f'{label}_{kind}'] = macs / best / 1e9
        out[label] = max(out[f'{label}_conv'], out[f'{label}_matmul'])
    return out


def backbone_gmacs(name, sizes):
    """Multiply-adds (G) of the backbone at each size, counted by mmengine's FlopAnalyzer
    (our attention included: traced graphs run the explicit product)."""
    import torch
    from mmengine.analysis import FlopAnalyzer
    model = build_backbone(name)
    out = {}
    with torch.no_grad():
        for s in sizes:
            analyzer = FlopAnalyzer(model, torch.rand(1, 3, s, s))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            out[s] = analyzer.total() / 1e9
    return out


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


def check_engines(engines, device):
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise SystemExit(f'--engines: unknown {bad}; expected some of {list(ENGINES)}')
    if device.type != 'cpu':
        skipped = [e for e in engines if e in CPU_ONLY]
        if skipped:
            print(f'--device {device.type}: {skipped} are CPU engines; skipped', flush=True)
        engines = [e for e in engines if e not in CPU_ONLY]
    return engines


def render_saved(path, out=None):
    """The report of a run saved with ``--json``, re-rendered by this version of the tool
    (nothing is measured); written as that machine's section of ``out`` too."""
    with open(path) as f:
        result = json.load(f)
    result['rendered_from'] = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    text = report(result)
    print(text)
    if out:
        write_section(out, result, text)
    return result


def run(args):
    if args.report_from:
        return render_saved(args.report_from, args.out)
    import torch
    apply_malloc(args.malloc)
    sys.path.insert(0, ROOT)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cpu':
        torch.set_num_threads(args.threads)
    engines = check_engines(list(args.engines), device)
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
    peaks = ceiling(args.threads) if device.type == 'cpu' else {}
    if peaks:
        print('ceiling (G multiply-adds/s): ' + ', '.join(f'{k} {v:.0f}'
                                                          for k, v in peaks.items()), flush=True)
    cases, gmacs = {}, {}
    with tempfile.TemporaryDirectory() as work_dir:
        for name in names:
            gmacs[name] = backbone_gmacs(name, args.sizes)
            for (engine, size), case in make_cases(name, engines, args.sizes, device,
                                                   work_dir).items():
                cases[(name, engine, size)] = case
        print(f'{len(cases)} cases, {args.rounds} interleaved rounds', flush=True)
        times = timed_rounds(cases, args.rounds, device, args.amp)
    thr = {k: sorted(1 / t for t in v) for k, v in times.items()}
    from mmhiri.utils.machine import cpu_info
    name_, fam, bf16 = cpu_info()
    from mmhiri.runtime import report as runtime_report
    choices = {n: runtime_report(cases[(n, 'runtime', args.sizes[0])][0].fn)
               for n in names if (n, 'runtime', args.sizes[0]) in cases}
    result = dict(
        machine=name_ if device.type == 'cpu' else torch.cuda.get_device_name(device),
        cpu_family=fam, cpu_bf16=bf16, device=device.type,
        threads=torch.get_num_threads() if device.type == 'cpu' else None,
        amp=args.amp, malloc={k: os.environ.get(k) for k in TUNED_MALLOC},
        versions=versions(), rounds=args.rounds, argv=args.argv, ceiling=peaks,
        gmacs={n: {str(s): v for s, v in g.items()} for n, g in gmacs.items()},
        dtypes={'|'.join(map(str, k)): c[0].dtype for k, c in cases.items()},
        runtime_choices=choices,
        throughput={'|'.join(map(str, k)): dict(median=statistics.median(v), min=v[0],
                                                max=v[-1]) for k, v in thr.items()},
        train_step=train_steps)
    text = report(result)
    print(text)
    if args.out:
        write_section(args.out, result, text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


def versions():
    import torch
    out = {'torch': torch.__version__, 'python': platform.python_version()}
    for pkg in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'onnxruntime', 'openvino'):
        try:
            out[pkg] = __import__(pkg).__version__.split('-')[0]
        except ImportError:
            pass
    return out


def machine_key(result):
    """The heading of this machine's section in the report file."""
    if result['device'] != 'cpu':
        return f'{result["machine"]} ({result["device"]})'
    fam = f', {result["cpu_family"]}' if result.get('cpu_family') else ''
    return f'{result["machine"]}{fam}, {result["threads"]} threads'


def hiri_swin_pairs(t):
    """(engine, hi, lo, HIRI-ViT-S key at hi, Swin-T key at lo) for every engine and ``PAIRS``
    entry that the throughputs ``t`` hold for both models."""
    for e in sorted({k.split('|')[1] for k in t}, key=ENGINES.index):
        for hi, lo in PAIRS:
            a, b = f'HIRI-ViT-S|{e}|{hi}', f'Swin-T|{e}|{lo}'
            if a in t and b in t:
                yield e, hi, lo, a, b


def ratio_rows(result):
    """(label, numerator key, denominator key) for the ratios a user compares: HIRI-ViT-S at 2x
    the resolution against Swin-T through each engine, ViTAEv2-S through each engine against
    its explicit eager path, and each engine against PyTorch eager fp32."""
    t = result['throughput']
    engines = sorted({k.split('|')[1] for k in t}, key=ENGINES.index)
    rows = [(f'HIRI-ViT-S {e} at {hi} ÷ Swin-T {e} at {lo}', a, b)
            for e, hi, lo, a, b in hiri_swin_pairs(t)]
    for e in engines:
        if e == 'explicit':
            continue
        for s in (224, 448, 896):
            a, b = f'ViTAEv2-S|{e}|{s}', f'ViTAEv2-S|explicit|{s}'
            if a in t and b in t:
                rows.append((f'ViTAEv2-S {e} ÷ ViTAEv2-S explicit eager at {s}', a, b))
    for e in engines:
        if e in ('eager', 'explicit'):
            continue
        for n in MODELS:
            for s in (448, ):
                a, b = f'{n}|{e}|{s}', f'{n}|eager|{s}'
                if a in t and b in t:
                    rows.append((f'{n} {e} ÷ {n} eager fp32 at {s}', a, b))
    return rows


def fraction(result, key):
    """Median multiply-adds per second of case ``key`` ('model|engine|size') as a fraction of
    the ceiling of its precision, or None without a ceiling or a multiply-add count."""
    name, _, size = key.split('|')
    g = (result.get('gmacs') or {}).get(name, {}).get(size)
    peaks = result.get('ceiling') or {}
    r = result['throughput'].get(key)
    if not (g and peaks and r):
        return None
    return r['median'] * g / peaks[(result.get('dtypes') or {}).get(key, 'fp32')]


def bound_rows(result):
    """Per engine and pair of sizes: the measured HIRI-ViT-S ÷ Swin-T throughput ratio as
    (Swin-T's multiply-adds ÷ HIRI-ViT-S's, the ratio at equal efficiency) x (HIRI-ViT-S's
    fraction of the ceiling ÷ Swin-T's), and the fraction HIRI-ViT-S would need for
    ``TARGET_RATIO`` at Swin-T's measured one. Tuples (engine, hi, lo, measured, macs ratio,
    efficiency ratio, needed fraction)."""
    t, g = result['throughput'], result.get('gmacs') or {}
    rows = []
    for e, hi, lo, a, b in hiri_swin_pairs(t):
        fa, fb = fraction(result, a), fraction(result, b)
        if fa is None or fb is None:
            continue
        macs = g['Swin-T'][str(lo)] / g['HIRI-ViT-S'][str(hi)]
        rows.append((e, hi, lo, t[a]['median'] / t[b]['median'], macs, fa / fb,
                     fb * TARGET_RATIO / macs))
    return rows


def report(result):
    t = result['throughput']
    sizes = sorted({int(k.split('|')[2]) for k in t})
    amp = f', autocast {result["amp"]}' if result['amp'] else ''
    peaks = result.get('ceiling') or {}
    lines = [
        f'## {machine_key(result)}',
        '',
        'Written by `python tools/analysis/benchmark.py --side-by-side '
        + ' '.join(result.get('argv', [])) + '` (engines and method: '
        '`tools/analysis/side_by_side.py`). Device: ' + result['device'] + amp + '; '
        + ', '.join(f'{k} {v}' for k, v in result['versions'].items()) + '.',
    ]
    if result.get('rendered_from'):
        lines.append(f'Rendered again from that run\'s saved results (`--report-from '
                     f'{result["rendered_from"]}`): the figures are that run\'s.')
    if result['device'] == 'cpu':
        lines.append(
            f'CPU: {result["machine"]} ({result.get("cpu_family") or "family unknown"}; bf16 '
            f'instructions: {", ".join(result.get("cpu_bf16") or []) or "none"}), '
            f'{result["threads"]} thread(s). malloc: '
            + (', '.join(f'{k}={v}' for k, v in result['malloc'].items() if v)
               or "glibc defaults") + '.')
    if peaks:
        lines.append(
            'Measured ceiling (G multiply-adds/s): fp32 '
            f'{peaks["fp32"]:.0f} (conv {peaks["fp32_conv"]:.0f}, matmul '
            f'{peaks["fp32_matmul"]:.0f}), bf16 {peaks["bf16"]:.0f} (conv '
            f'{peaks["bf16_conv"]:.0f}, matmul {peaks["bf16_matmul"]:.0f}).')
    lines += ['', f'Backbone alone, batch 1, eval, no_grad; {result["rounds"]} interleaved '
              'rounds; images/s, median (min-max)'
              + ('; in brackets the fraction of the ceiling of the case\'s precision' if peaks
                 else '') + ':', '',
              '| model | engine | ' + ' | '.join(f'{s}²' for s in sizes) + ' |',
              '|---|---|' + '---|' * len(sizes)]
    seen = []
    for key in t:
        name, engine, _ = key.split('|')
        if (name, engine) in seen:
            continue
        seen.append((name, engine))
        cells = []
        for s in sizes:
            r = t.get(f'{name}|{engine}|{s}')
            if not r:
                cells.append('–')
                continue
            cell = f'{r["median"]:.2f} ({r["min"]:.2f}–{r["max"]:.2f})'
            f = fraction(result, f'{name}|{engine}|{s}')
            if f is not None:
                cell += f' [{f:.2f}]'
            cells.append(cell)
        lines.append(f'| {name} | {engine} | ' + ' | '.join(cells) + ' |')
    if result.get('gmacs'):
        lines += ['', 'Backbone multiply-adds (G, mmengine FlopAnalyzer): ' + '; '.join(
            f'{n} ' + ' / '.join(f'{v:.2f}' for v in g.values()) for n, g in
            result['gmacs'].items()) + f' at {" / ".join(f"{s}²" for s in sizes)}.']
    rows = ratio_rows(result)
    if rows:
        # best rounds beside the medians: on a shared machine a slow spell lowers the
        # medians; where the two columns differ much, the run was noisy
        lines += ['', '| ratio of throughputs | medians | best rounds |', '|---|---|---|']
        for label, a, b in rows:
            lines.append(f'| {label} | {t[a]["median"] / t[b]["median"]:.2f} | '
                         f'{t[a]["max"] / t[b]["max"]:.2f} |')
    bounds = bound_rows(result)
    if bounds:
        lines += ['', 'HIRI-ViT-S at 2x the side ÷ Swin-T, engine by engine: the measured ratio '
                  'is the multiply-add ratio (what equal efficiency gives) times the ratio of '
                  'the fractions of the ceiling; the last column is the fraction HIRI-ViT-S '
                  f'would need for {TARGET_RATIO:g}x at Swin-T\'s measured one (above 1: more '
                  'than the measured ceiling):', '',
                  '| engine | HIRI-ViT-S ÷ Swin-T | measured | Swin-T ÷ HIRI-ViT-S '
                  'multiply-adds | fraction ÷ fraction | HIRI-ViT-S fraction needed for '
                  f'{TARGET_RATIO:g}x |', '|---|---|---|---|---|---|']
        for e, hi, lo, measured, macs, eff, need in bounds:
            lines.append(f'| {e} | {hi}² ÷ {lo}² | {measured:.2f} | {macs:.2f} | {eff:.2f} | '
                         f'{need:.2f} |')
    if result.get('runtime_choices'):
        lines += ['', 'What `mmhiri.runtime.optimize` chose here (decisions per candidate, '
                  'over the layers and input kinds it met):', '']
        for n, c in result['runtime_choices'].items():
            lines.append(f'- {n}: ' + '; '.join(
                f'{kind} ' + ', '.join(f'{k} {v}' for k, v in counts.items() if v)
                for kind, counts in c.items()))
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


HEADER = '''# Side-by-side benchmark

One section per machine measured, each written by `tools/analysis/benchmark.py --side-by-side`
on that machine (a rerun replaces its own machine's section). Ratios hold for the machine they
were measured on: the same code ranks routes and engines differently on another CPU.
'''


def write_section(path, result, text):
    """Put ``text`` into ``path`` as the section of this machine, keeping the others."""
    old = open(path).read() if os.path.isfile(path) else ''
    sections = re.split(r'(?m)^(?=## )', old)
    head = sections[0] if sections[0].strip() and not sections[0].startswith('## ') \
        else HEADER
    key = f'## {machine_key(result)}\n'
    kept = [s for s in sections if s.startswith('## ') and not s.startswith(key)]
    body = [text.rstrip() + '\n'] + [s.rstrip() + '\n' for s in kept]
    with open(path, 'w') as f:
        f.write(head.rstrip() + '\n\n' + '\n'.join(body))
