"""Our backbones' parameters and FLOPs beside the papers' tables, as Markdown.

    python tools/analysis/paper_table.py [--only hiri|vitae] [--out FILE]

Counter: mmengine's FlopAnalyzer (fvcore rules) on a traced forward, batch 1. One multiply-add
counts as one FLOP (the papers' "GFLOPs" convention). Counted: convolutions, linear layers and
matrix products (attention included), batch/layer norm, upsampling. Not counted: element-wise
operations (activations, additions, softmax, exp). ``no attn-matmul`` leaves out the
attention's matrix products (what module-hook counters such as ptflops/mmcv report).
Classification heads are added analytically: HIRI-ViT's GAP + Linear(C, 5C) + Linear(5C, 1000),
the ViTAE models' Linear(C, 1000).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# Paper figures: (params M, {resolution: GFLOPs}), with their source.
PAPER = {
    # HIRI-ViT paper, Table 2 (224/384/448) and Table 3 (768); classifier totals.
    ('HIRIViT', 's'): (34.8, {224: 4.5, 384: 4.7, 448: 5.0, 768: 16.1}),
    ('HIRIViT', 'b'): (54.4, {224: 8.2, 384: 9.3, 448: 9.9, 768: 31.6}),
    ('HIRIViT', 'l'): (94.4, {224: 17.0, 384: 18.2, 448: 19.9, 768: 63.4}),
    # ViTAEv2 paper, Table 1 (224).
    ('ViTAEv2', 's'): (19.3, {224: 5.7}),
    ('ViTAEv2', '48m'): (48.7, {224: 13.3}),
    ('ViTAEv2', 'b'): (89.7, {224: 24.3}),
    ('ViTAE', 't'): (4.8, {224: 1.5}),
    ('ViTAE', '6m'): (6.5, {224: 2.0}),
    ('ViTAE', '13m'): (13.2, {224: 3.3}),
    ('ViTAE', 's'): (23.6, {224: 5.6}),
}
# HIRI-ViT backbone without a classification head, implied by the detector/segmentor totals
# of the HIRI-ViT paper's Tables 4-6 minus stock necks and heads.
PAPER_HIRI_BACKBONE = {'s': 30.9, 'b': 49.2}


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
    import torch
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.rand(1, 3, res, res))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        total = analyzer.total()
        by_op = analyzer.by_operator()
    matmul = sum(v for k, v in by_op.items() if k in ('matmul', 'bmm', 'einsum'))
    return total, total - matmul


def pct(ours, paper):
    return f'{100 * (ours / paper - 1):+.1f}%'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', choices=['hiri', 'vitae'])
    parser.add_argument('--out', help='also write the Markdown here')
    args = parser.parse_args()
    rows = ['| model | params (M) ours / paper | backbone only (M) ours / paper | res | GFLOPs '
            'ours / paper | no attn-matmul |', '|---|---|---|---|---|---|']
    for (name, arch), (paper_params, paper_flops) in PAPER.items():
        if args.only == 'hiri' and name != 'HIRIViT' or args.only == 'vitae' and name == 'HIRIViT':
            continue
        model = build(name, arch).eval()
        backbone = sum(p.numel() for p in model.parameters())
        hp, hf = head_cost(name, model.stage_channels[-1])
        total = (backbone + hp) / 1e6
        bb_paper = PAPER_HIRI_BACKBONE.get(arch) if name == 'HIRIViT' else None
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
            print(rows[-1], flush=True)
    text = '\n'.join(rows)
    print('\n' + text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
