"""Our parameters and FLOPs beside the papers' figures, as Markdown.

    python tools/analysis/paper_table.py [--only backbones configs plot] [--out FILE]
        [--backbones HIRIViT-S ...] [--configs NAME ...] [--resolutions R ...] [--plot-out PNG]

Three sections (all by default; ``--only`` picks some):

- ``backbones``: every backbone variant as a classifier beside the papers' Tables 1-3
  (``--only hiri`` / ``vitae``: one family; ``--backbones``: named variants).
- ``configs``: every top-level ``configs/*.py`` (the downstream mmdet/mmseg/mmpose models) and
  every config the papers' tables call for, whole-model params and GFLOPs at the resolution the
  paper's figures refer to, beside them (``tools/analysis/paper_figures.py``). A config listed
  there but absent from ``configs/`` gets a "config not found" row; ``--configs`` restricts the
  section to the named configs.
- ``plot``: backbone GFLOPs against square input resolution for HIRI-ViT-S, ViTAEv2-S and
  mmdet's Swin-T and PVTv2-B2 (HIRI-ViT paper, Fig. 1), as a table and a PNG (``--plot-out``).

Counter: mmengine's FlopAnalyzer (fvcore rules) on a traced forward, batch 1, on CPU. One
multiply-add counts as one FLOP (the papers' "GFLOPs" convention). Counted: convolutions,
linear layers and matrix products (attention included), batch/layer/group norm, upsampling,
adaptive pooling. Not counted: element-wise operations (activations, additions, softmax, exp).
``no attn-matmul`` leaves out the attention's matrix products (what module-hook counters such
as ptflops/mmcv report). Backbone rows: classification heads are added analytically (HIRI-ViT's
GAP + Linear(C, 5C) + Linear(5C, 1000), the ViTAE models' Linear(C, 1000)). Config rows: the
model in ``mode='tensor'`` as ``get_flops.py`` counts it (input padded to the preprocessor's
``pad_size_divisor``; two-stage detectors' RoI heads run on the RPN's proposals).

``--out FILE`` writes the sections between ``<!-- paper_table:NAME -->`` markers; if FILE
already has a section's markers, only that section is replaced, so a partial run updates its
part of an existing file and leaves the rest.
"""
import argparse
import glob
import os
import os.path as osp
import re
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from get_flops import measure  # noqa: E402
from paper_figures import BACKBONES, CONFIGS, FIG1, HIRI_BACKBONE, PLOT_POINTS  # noqa: E402

SECTIONS = ('backbones', 'configs', 'plot')
RESOLUTIONS = (224, 320, 384, 448, 512, 640, 768, 896, 1024)
# Fig. 1 comparison backbones from mmdet's own configs (settings read from there).
MMDET_BACKBONES = {
    'Swin-T': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    'PVTv2-B2': 'mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py',
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pct(ours, paper):
    return f'{100 * (ours / paper - 1):+.1f}%'


# ----------------------------------------------------------------------------- backbones

def build(name, arch):
    from mmhiri.models import HIRIViT, ViTAE, ViTAEv2
    if name == 'HIRIViT':
        return HIRIViT(arch, out_indices=(4, ))
    if name == 'ViTAEv2':
        return ViTAEv2(arch, out_indices=(3, ))
    return ViTAE(arch)


def head_cost(name, channels, classes=1000):
    """(params, FLOPs) of the classification head on the pooled vector."""
    if name == 'HIRIViT':
        hidden = 5 * channels
        return channels * hidden + hidden + hidden * classes + classes, \
            channels * hidden + hidden * classes
    return channels * classes + classes, channels * classes


def count_flops(model, res):
    """(total, total without attention matrix products) at a square ``res``."""
    import torch

    from mmhiri.utils.flops import flop_analyzer
    with torch.no_grad():
        analyzer = flop_analyzer(model, torch.rand(1, 3, res, res))
        total = analyzer.total()
        by_op = analyzer.by_operator()
    matmul = sum(v for k, v in by_op.items()
                 if k in ('matmul', 'bmm', 'einsum', 'scaled_dot_product_attention'))
    return total, total - matmul


def backbone_section(family=None, names=None):
    wanted = {n.lower() for n in names} if names else None
    rows = ['| model | params (M) ours / paper | backbone only (M) ours / paper | res | GFLOPs '
            'ours / paper | no attn-matmul |', '|---|---|---|---|---|---|']
    for (name, arch), (paper_params, paper_flops) in BACKBONES.items():
        if family == 'hiri' and name != 'HIRIViT' or family == 'vitae' and name == 'HIRIViT':
            continue
        if wanted is not None and f'{name}-{arch}'.lower() not in wanted:
            continue
        model = build(name, arch).eval()
        backbone = sum(p.numel() for p in model.parameters())
        hp, hf = head_cost(name, model.stage_channels[-1])
        total = (backbone + hp) / 1e6
        bb_paper = HIRI_BACKBONE.get(arch) if name == 'HIRIViT' else None
        bb = f'{backbone / 1e6:.2f} / {bb_paper} ({pct(backbone / 1e6, bb_paper)})' \
            if bb_paper else f'{backbone / 1e6:.2f} / -'
        for i, (res, paper) in enumerate(paper_flops.items()):
            flops, no_mm = count_flops(model, res)
            flops, no_mm = (flops + hf) / 1e9, (no_mm + hf) / 1e9
            first = i == 0
            rows.append(
                f'| {name}-{arch.upper()} | '
                + (f'{total:.2f} / {paper_params} ({pct(total, paper_params)})' if first else '')
                + f' | {bb if first else ""} | {res} | {flops:.2f} / {paper} ({pct(flops, paper)})'
                f' | {no_mm:.2f} ({pct(no_mm, paper)}) |')
            log(rows[-1])
    return ('## Backbones (classifiers)\n\n'
            'Papers: HIRI-ViT Tables 2 (224/384/448) and 3 (768), ViTAEv2 Table 1 (224); '
            'classification heads added analytically. "backbone only" for HIRI-ViT: the paper\'s '
            'Tables 4-6 totals minus stock necks and heads.\n\n' + '\n'.join(rows))


# ----------------------------------------------------------------------------- configs

def config_names(selected=None, config_dir=None):
    """Config names to report: the papers' (in table order), then the others found on disk."""
    config_dir = config_dir or osp.join(ROOT, 'configs')
    found = sorted(osp.splitext(osp.basename(p))[0]
                   for p in glob.glob(osp.join(config_dir, '*.py')))
    names = list(CONFIGS) + [n for n in found if n not in CONFIGS]
    if selected:
        wanted = [osp.splitext(osp.basename(n))[0] for n in selected]
        unknown = [n for n in wanted if n not in names]
        names = [n for n in names if n in wanted] + unknown
    return names, set(found)


def natural_shape(path):
    """The config's own input size (H, W) where it states one (pose codec, seg crop)."""
    from mmhiri.apis import load_config
    cfg = load_config(path)
    codec = cfg.get('codec')
    if isinstance(codec, dict) and codec.get('input_size'):
        w, h = codec['input_size']
        return h, w
    if cfg.get('crop_size'):
        return tuple(cfg.crop_size)
    return None


def fmt(v, digits=2):
    return '-' if v is None else f'{v:.{digits}f}' if isinstance(v, float) else str(v)


def paper_fmt(v):
    return '-' if v is None else str(v)


def config_rows(selected=None, config_dir=None):
    """One dict per config: our figures (measured), the paper's, and notes."""
    config_dir = config_dir or osp.join(ROOT, 'configs')
    names, found = config_names(selected, config_dir)
    rows = []
    for name in names:
        fig = CONFIGS.get(name, {})
        row = dict(name=name, paper_params=fig.get('params'), paper_gflops=fig.get('gflops'),
                   source=fig.get('source'), notes=[fig['note']] if fig.get('note') else [])
        path = osp.join(config_dir, name + '.py')
        if name not in found:
            row['notes'].insert(0, 'config not found')
            rows.append(row)
            continue
        if 'demo' in name:
            row['notes'].insert(0, 'demo config: not measured')
            rows.append(row)
            continue
        t0 = time.time()
        try:
            shape = fig.get('shape') or natural_shape(path)
            r = measure(path, shape)
        except Exception as e:  # a config being written, a missing dependency: say so, go on
            row['notes'].insert(0, f'error: {type(e).__name__}: {str(e)[:200]}')
            rows.append(row)
            log(f'{name}: {row["notes"][0]}')
            continue
        row.update(r, seconds=time.time() - t0)
        if not fig:
            row['notes'].append('no paper figure')
        rows.append(row)
        log(f'{name}: {r["params"]:.2f} M, {r["flops"]:.2f} GFLOPs at '
            f'{r["input"][0]}x{r["input"][1]} ({row["seconds"]:.0f} s)')
    return rows


def config_table(rows):
    lines = ['| config | framework | input H×W | params (M) ours | paper | diff | GFLOPs ours | '
             'paper | diff | backbone (M / GFLOPs) | source | note |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        measured = 'params' in r
        if measured:
            (h, w), (ph, pw) = r['shape'], r['input']
            size = f'{h}×{w}' + (f' (padded to {ph}×{pw})' if (ph, pw) != (h, w) else '')
            bb = f'{r["backbone_params"]:.2f} / {r["backbone_flops"]:.2f}' \
                if r.get('backbone') else '-'
        cells = [f'`{r["name"]}`', r.get('scope', '-'), size if measured else '-',
                 fmt(r.get('params')), paper_fmt(r['paper_params']),
                 pct(r['params'], r['paper_params']) if measured and r['paper_params'] else '-',
                 fmt(r.get('flops')), paper_fmt(r['paper_gflops']),
                 pct(r['flops'], r['paper_gflops']) if measured and r['paper_gflops'] else '-',
                 bb if measured else '-', r['source'] or '-', '; '.join(r['notes']) or '']
        cells = [str(c).replace('|', '\\|').replace('\n', ' ') for c in cells]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def config_section(selected=None):
    rows = config_rows(selected)
    return ('## Downstream configs\n\n'
            'Whole model (`get_flops.py`: `mode=\'tensor\'`, batch 1, input padded to the '
            'preprocessor\'s divisor; two-stage detectors\' RoI heads on the RPN\'s proposals for '
            'a random input, mask heads on at most 100 RoIs per image as at inference) at the '
            'resolution the paper\'s figures refer to; where the paper '
            'gives no FLOPs, at the config\'s own input size (ViTAEv2 detectors: 800×1280, the '
            'Swin convention). Paper figures: `tools/analysis/paper_figures.py`.\n\n'
            + config_table(rows))


# ----------------------------------------------------------------------------- plot

def plot_backbones():
    """{label: (builder, settings text)} for the FLOPs-vs-resolution comparison."""
    from mmengine.config import Config

    def mmhiri_model(cls_name, arch):
        def make():
            import mmhiri.models as m
            return getattr(m, cls_name)(arch)
        return make

    def mmdet_model(path):
        def make():
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
            register_all_modules(init_default_scope=False)
            import mmdet
            rel = path.split('::', 1)[1]
            cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                                           rel)).model.backbone
            cfg.init_cfg = None
            return MODELS.build(cfg)
        return make

    return {
        'HIRI-ViT-S': (mmhiri_model('HIRIViT', 's'), "mmhiri.HIRIViT(arch='s')"),
        'ViTAEv2-S': (mmhiri_model('ViTAEv2', 's'), "mmhiri.ViTAEv2(arch='s')"),
        'Swin-T': (mmdet_model(MMDET_BACKBONES['Swin-T']),
                   'mmdet SwinTransformer, backbone of ' + MMDET_BACKBONES['Swin-T']),
        'PVTv2-B2': (mmdet_model(MMDET_BACKBONES['PVTv2-B2']),
                     'mmdet PyramidVisionTransformerV2, backbone of ' + MMDET_BACKBONES['PVTv2-B2']),
    }


def flops_vs_resolution(resolutions=RESOLUTIONS):
    """{label: {res: GFLOPs}}, {label: {res: seconds}}, {label: settings}: backbones alone."""
    flops, seconds, settings = {}, {}, {}
    for label, (make, text) in plot_backbones().items():
        model = make()
        model.eval()  # (mmdet's Swin.train() returns None)
        settings[label] = text
        flops[label], seconds[label] = {}, {}
        for res in resolutions:
            t0 = time.time()
            flops[label][res] = count_flops(model, res)[0] / 1e9
            seconds[label][res] = time.time() - t0
            log(f'{label} @ {res}: {flops[label][res]:.2f} GFLOPs ({seconds[label][res]:.1f} s)')
    return flops, seconds, settings


def save_plot(flops, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, (label, pts) in enumerate(flops.items()):
        res = sorted(pts)
        colour = f'C{i}'
        ax1.plot(res, [pts[r] for r in res], 'o-', color=colour, label=f'{label} (ours)')
        paper = PLOT_POINTS.get(label, {})
        if paper:
            ax1.plot(list(paper), list(paper.values()), 's', mfc='none', ms=9, color=colour,
                     label=f'{label} (paper)')
        ax2.plot(res, [pts[r] / pts[res[0]] for r in res], 'o-', color=colour, label=label)
    res = sorted(next(iter(flops.values())))
    ax2.plot(res, [(r / res[0]) ** 2 for r in res], 'k--', lw=1, label='(r / r0)²')
    ax1.set(xlabel='input resolution (square)', ylabel='backbone GFLOPs',
            title='Backbone GFLOPs vs input resolution', yscale='log')
    ax2.set(xlabel='input resolution (square)', ylabel=f'GFLOPs / GFLOPs at {res[0]}',
            title=f'Growth relative to {res[0]}×{res[0]}', yscale='log')
    for ax in (ax1, ax2):
        ax.grid(True, which='both', alpha=.3)
        ax.set_xticks(res)
        ax.set_xticklabels([str(r) for r in res], rotation=45 if len(res) > 6 else 0)
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle('mmengine FlopAnalyzer, backbone alone, batch 1 (1 multiply-add = 1 FLOP); '
                 'paper points: classifier totals', fontsize=9)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_section(resolutions=RESOLUTIONS, plot_out=None, md_dir='.'):
    t0 = time.time()
    flops, seconds, settings = flops_vs_resolution(resolutions)
    elapsed = time.time() - t0
    labels = list(flops)
    res = sorted(resolutions)
    lines = ['| resolution | ' + ' | '.join(f'{m} GFLOPs' for m in labels) + ' |',
             '|---|' + '---|' * len(labels)]
    for r in res:
        lines.append(f'| {r} | ' + ' | '.join(
            f'{flops[m][r]:.2f} (×{flops[m][r] / flops[m][res[0]]:.2f})' for m in labels) + ' |')
    lines.append('| count time (s) | ' + ' | '.join(
        f'{sum(seconds[m].values()):.0f}' for m in labels) + ' |')
    text = ['## Backbone FLOPs vs input resolution (HIRI-ViT Fig. 1)', '',
            f'Backbone alone, square inputs, mmengine FlopAnalyzer, batch 1 (×: relative to '
            f'{res[0]}). Models: ' + '; '.join(f'{m}: {settings[m]}' for m in labels)
            + f'. Counted in {elapsed:.0f} s on CPU.', '', *lines, '']
    if 224 in res and 384 in res:
        growth = ', '.join(f'{m} ×{flops[m][384] / flops[m][224]:.2f}' for m in labels)
        text.append(f'224 → 384: ours {growth} (pixels ×{(384 / 224) ** 2:.2f}). Paper Fig. 1: '
                    + ', '.join(f'{m} {p[224]} → {p[384]} G (×{p[384] / p[224]:.2f})'
                                for m, p in FIG1.items())
                    + '; HIRI-ViT-S in Table 2: 4.5 → 4.7 G (×1.04).')
        text.append('')
    if plot_out:
        save_plot(flops, plot_out)
        text.append('![backbone GFLOPs vs resolution]('
                    f'{osp.relpath(osp.abspath(plot_out), osp.abspath(md_dir))})')
    return '\n'.join(text).rstrip('\n')


# ----------------------------------------------------------------------------- output

HEADER = ('# Sizes beside the papers\n\nGenerated by `python tools/analysis/paper_table.py '
          '--out docs/paper_table.md --plot-out docs/flops_vs_resolution.png` (sections: '
          '`--only backbones|configs|plot`).\n')


def write_sections(path, sections):
    """Write ``{name: markdown}`` into ``path``, replacing only the sections it already has."""
    text = open(path).read() if osp.isfile(path) else HEADER
    for name in SECTIONS:
        if name not in sections:
            continue
        block = f'<!-- paper_table:{name} -->\n{sections[name]}\n<!-- /paper_table:{name} -->'
        pattern = re.compile(rf'<!-- paper_table:{name} -->.*?<!-- /paper_table:{name} -->',
                             re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip('\n') + '\n\n' + block + '\n'
    with open(path, 'w') as f:
        f.write(text if text.endswith('\n') else text + '\n')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', nargs='+', choices=[*SECTIONS, 'hiri', 'vitae'],
                        help='sections to produce (hiri / vitae: the backbone rows of one '
                        'family); default: all')
    parser.add_argument('--backbones', nargs='+', metavar='NAME-ARCH',
                        help='backbone rows to produce, e.g. HIRIViT-S ViTAE-T')
    parser.add_argument('--configs', nargs='+', metavar='NAME',
                        help='config rows to produce (names or paths under configs/)')
    parser.add_argument('--resolutions', nargs='+', type=int, default=list(RESOLUTIONS),
                        help='square resolutions for the plot section')
    parser.add_argument('--plot-out', help='write the plot section\'s PNG here')
    parser.add_argument('--out', help='also write the Markdown here (section by section)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    only = set(args.only or SECTIONS)
    family = None
    if {'hiri', 'vitae'} & only:
        family = None if {'hiri', 'vitae'} <= only else 'hiri' if 'hiri' in only else 'vitae'
        only = (only - {'hiri', 'vitae'}) | {'backbones'}
    sections = {}
    t0 = time.time()
    if 'backbones' in only:
        sections['backbones'] = backbone_section(family, args.backbones)
        log(f'backbones: {time.time() - t0:.0f} s')
    if 'configs' in only:
        t1 = time.time()
        sections['configs'] = config_section(args.configs)
        log(f'configs: {time.time() - t1:.0f} s')
    if 'plot' in only:
        t1 = time.time()
        sections['plot'] = plot_section(args.resolutions, args.plot_out,
                                        osp.dirname(args.out) if args.out else '.')
        log(f'plot: {time.time() - t1:.0f} s')
    for name in SECTIONS:
        if name in sections:
            print(sections[name] + '\n')
    if args.out:
        write_sections(args.out, sections)
    log(f'total: {time.time() - t0:.0f} s')


if __name__ == '__main__':
    main()
