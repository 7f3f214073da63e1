"""mmengine's own FlopAnalyzer, without any handle of ours (what mmdet's get_flops.py and
mmengine's get_model_complexity_info use), counts our attention: its totals equal the ones
docs/paper_table.md lists, and HIRI-ViT's are within 5% of the paper's Tables 2-3."""
import re

import pytest
import torch

from conftest import ROOT

PAPER = {('s', 448): 5.0, ('b', 448): 9.9, ('l', 448): 19.9,
         ('s', 768): 16.1, ('b', 768): 31.6, ('l', 768): 63.4}  # HIRI-ViT Tables 2-3 (G)


def table_flops():
    """{(arch, res): our GFLOPs} from docs/paper_table.md's backbone rows."""
    text = open(f'{ROOT}/docs/paper_table.md').read()
    out, arch = {}, None
    for m in re.finditer(r'^\| HIRIViT-(\w) \|[^|]*\|[^|]*\| (\d+) \| ([\d.]+) / ', text, re.M):
        out[(m.group(1).lower(), int(m.group(2)))] = float(m.group(3))
    return out


def stock_count(model, res):
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.rand(1, 3, res, res))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total()


@pytest.mark.slow
@pytest.mark.parametrize('arch,res', sorted(PAPER))
def test_stock_flop_analyzer_gives_the_paper_table(arch, res):
    import sys
    sys.path.insert(0, f'{ROOT}/tools/analysis')
    from paper_table import build, head_cost
    model = build('HIRIViT', arch).eval()
    total = (stock_count(model, res) + head_cost('HIRIViT', model.stage_channels[-1])[1]) / 1e9
    ours = table_flops()[(arch, res)]
    assert round(total, 2) == ours, (total, ours)
    assert abs(total / PAPER[(arch, res)] - 1) < 0.05, (total, PAPER[(arch, res)])


def test_get_model_complexity_info_counts_attention():
    """mmengine's get_model_complexity_info (mmdet/mmseg's get_flops.py) on a backbone with
    full and window attention equals the explicit path's count."""
    from mmengine.analysis import get_model_complexity_info

    from conftest import tiny_backbone
    model = tiny_backbone('ViTAEv2').eval()
    fused = get_model_complexity_info(model, (3, 64, 64), show_table=False, show_arch=False)
    model.set_fused_attn(False)
    explicit = get_model_complexity_info(model, (3, 64, 64), show_table=False,
                                         show_arch=False)
    assert fused['flops'] == explicit['flops'] > 0
