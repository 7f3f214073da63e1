"""HIRI-ViT: variants, sizes against the paper's tables, any input size, training wiring."""
import pytest
import torch

from conftest import TINY_HIRI
from mmhiri.models import HIRIViT

# Backbone without head (implied by Tables 4-6) and with the classification head (Table 2).
PAPER = {'s': dict(backbone=30.9, total=34.8, f448=5.0, f768=16.1),
         'b': dict(backbone=49.2, total=54.4, f448=9.9, f768=31.6),
         'l': dict(backbone=None, total=94.4, f448=19.9, f768=63.4)}


def count(model):
    return sum(p.numel() for p in model.parameters()) / 1e6


def head_params(channels, classes=1000, ratio=5):
    """GAP + Linear(C, 5C) + GELU + Linear(5C, classes): the head of configs/imagenet/hiri_*."""
    hidden = ratio * channels
    return (channels * hidden + hidden + hidden * classes + classes) / 1e6


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_params_match_paper(arch):
    model = HIRIViT(arch, out_indices=(4, ))  # one output norm, as the classifier uses
    backbone = count(model)
    total = backbone + head_params(model.stage_channels[-1])
    if PAPER[arch]['backbone']:
        assert abs(backbone / PAPER[arch]['backbone'] - 1) < 0.01, backbone
    assert abs(total / PAPER[arch]['total'] - 1) < 0.02, total


def test_table1_widths():
    for arch, chans, depths, heads in [('s', [32, 64, 128, 320, 512], [2, 2, 2, 9, 4], [5, 8]),
                                       ('b', [64, 96, 192, 320, 640], [2, 2, 3, 17, 4], [5, 10]),
                                       ('l', [80, 160, 224, 448, 640], [4, 4, 5, 25, 5], [7, 10])]:
        model = HIRIViT(arch)
        assert list(model.stage_channels) == chans
        assert [len(s.blocks) for s in model.stages] == depths
        assert [model.stages[i].blocks[0].attn.num_heads for i in (3, 4)] == heads


@pytest.mark.parametrize('hw', [(448, 448), (449, 611)])
def test_s_shapes_and_strides(hw):
    model = HIRIViT('s', out_indices=(0, 1, 2, 3, 4)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *hw))
    assert [o.shape[1] for o in outs] == [32, 64, 128, 320, 512]
    assert model.out_strides == [4, 8, 16, 32, 64]
    for o, s in zip(outs, model.out_strides):
        assert o.shape[-2:] == (-(-hw[0] // s), -(-hw[1] // s))
        assert torch.isfinite(o).all()


def test_dense_default_is_stages_2_to_5():
    model = HIRIViT('s')
    assert model.out_indices == (1, 2, 3, 4)
    assert model.out_channels == [64, 128, 320, 512] and model.out_strides == [8, 16, 32, 64]
    # 2x input through stages 2-5 gives the grid of a 4-stage backbone at 1x (strides 4..32)
    with torch.no_grad():
        outs = model.eval()(torch.rand(1, 3, 2 * 96, 2 * 128))
    assert [tuple(o.shape[-2:]) for o in outs] == [(24, 32), (12, 16), (6, 8), (3, 4)]


@pytest.mark.parametrize('hw', [(1, 1), (7, 13), (65, 33)])
def test_tiny_inputs(hw):
    model = HIRIViT(TINY_HIRI, out_indices=(0, 4)).eval()
    with torch.no_grad():
        a, b = model(torch.rand(2, 3, *hw))
    assert a.shape[-2:] == (-(-hw[0] // 4), -(-hw[1] // 4))
    assert b.shape[-2:] == (-(-hw[0] // 64), -(-hw[1] // 64))


def test_gradients_reach_every_parameter():
    model = HIRIViT(TINY_HIRI, out_indices=(0, 1, 2, 3, 4), drop_path_rate=0.)
    model.init_weights()
    model.train()
    outs = model(torch.rand(2, 3, 96, 80))
    loss = sum(o.square().mean() for o in outs)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


def test_drop_path_schedule_is_cumulative():
    model = HIRIViT('s', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks]
    assert len(rates) == 19 and rates[0] == 0 and abs(rates[-1] - 0.3) < 1e-6
    assert all(b > a for a, b in zip(rates, rates[1:]))


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_flops_match_paper(arch):
    from mmhiri.utils.flops import flop_analyzer
    model = HIRIViT(arch, out_indices=(4, )).eval()
    c = model.stage_channels[-1]
    for res, key in [(448, 'f448'), (768, 'f768')]:
        analyzer = flop_analyzer(model, torch.rand(1, 3, res, res))
        # + the head's two linear layers on the pooled vector
        flops = (analyzer.total() + c * 5 * c + 5 * c * 1000) / 1e9
        assert abs(flops / PAPER[arch][key] - 1) < 0.05, (res, flops)
