"""mmhiri.runtime: routes chosen by measurement give the folded model's outputs, follow its
weights, never reach a backward pass; folded models build and load directly (deploy=True);
``import mmhiri`` runs no kernel and reads no environment variable."""
import copy
import io
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn

from conftest import ROOT, tiny_backbone
from test_speed_paths import NAMES, SIZES, built, max_rel


def out_indices(name):
    return None if name != 'ViTAE' else (-1, )


@pytest.mark.parametrize('name', NAMES)
def test_folded_checkpoint_loads_into_a_model_built_folded(name):
    """switch_to_deploy() leaves what deploy=True builds: same keys and shapes, and the folded
    state_dict loads strictly and gives the folded outputs."""
    model = built(name, out_indices=out_indices(name))
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        ref = model(x)
    model.switch_to_deploy()
    folded = model.state_dict()
    fresh = tiny_backbone(name, out_indices=out_indices(name), deploy=True).eval()
    assert {k: tuple(v.shape) for k, v in fresh.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in folded.items()}
    fresh.load_state_dict(folded, strict=True)
    with torch.no_grad():
        assert max_rel(ref, fresh(x)) < 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) and not n.startswith('out_norm')
                   for n, m in fresh.named_modules())
    with pytest.raises(RuntimeError, match='cannot train'):
        fresh.train()


def test_folded_checkpoint_through_init_cfg(tmp_path):
    model = built('HIRIViT')
    model.switch_to_deploy()
    path = tmp_path / 'folded.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    fresh = tiny_backbone('HIRIViT', deploy=True,
                          init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    fresh.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert max_rel(model(x), fresh.eval()(x)) < 1e-6


ALL_ROUTES = [('RoutedMultiheadAttention', c) for c in ('fused', 'explicit', 'onednn16',
                                                         'onednn64')] + \
    [('RoutedLinear', c) for c in ('linear', 'onednn')] + \
    [('RoutedConv2d', c) for c in ('conv', 'prepacked', 'transposed')]


def force(model, kind, candidate):
    """Pin every routed layer of ``kind`` to ``candidate`` (window attention counts as
    multi-head attention)."""
    hit = 0
    for m in model.modules():
        choice = getattr(m, 'choice', None)
        if choice is not None and (type(m).__name__ == kind or (
                kind == 'RoutedMultiheadAttention' and type(m).__name__ ==
                'RoutedWindowAttention')):
            choice.forced = candidate
            hit += 1
    return hit


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('kind,candidate', ALL_ROUTES)
def test_every_route_gives_the_folded_outputs(name, kind, candidate):
    from mmhiri.runtime import optimize
    model = built(name, out_indices=out_indices(name))
    routed = optimize(copy.deepcopy(model), layout='channels_last')
    assert force(routed, kind, candidate)
    for hw in SIZES:
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            assert max_rel(model(x), routed(x)) < 1e-5, hw


@pytest.mark.parametrize('name', NAMES)
def test_optimize_chooses_by_measurement_and_reports(name):
    from mmhiri.runtime import optimize, report
    model = built(name, out_indices=out_indices(name))
    x = torch.randn(1, 3, 67, 93)
    routed = optimize(copy.deepcopy(model), example=x)
    got = report(routed)
    assert got['layout'] and sum(got['layout'].values()) == 1
    assert sum(got['RoutedLinear'].values()) > 0 and sum(got['RoutedConv2d'].values()) > 0
    attention = {k: v for k, v in got.items() if 'Attention' in k}
    assert attention and all(sum(v.values()) > 0 for v in attention.values())
    for m in routed.modules():  # every decision has the timings it was made on
        choice = getattr(m, 'choice', None)
        for key, name_ in (choice.chosen.items() if choice else []):
            assert name_ == min(choice.timings[key], key=choice.timings[key].get)
    with torch.no_grad():
        assert max_rel(model(x), routed(x)) < 1e-5
        assert all(o.is_contiguous() for o in routed(x))  # heads get NCHW maps


def test_measured_choice_picks_the_fastest_correct_candidate():
    from mmhiri.runtime.choice import MeasuredChoice
    calls = []

    def slow():
        calls.append('slow')
        time.sleep(0.01)
        return torch.ones(3)

    def fast():
        calls.append('fast')
        return torch.ones(3)

    def wrong():
        calls.append('wrong')
        return torch.zeros(3)

    def broken():
        raise RuntimeError('no such kernel here')

    choice = MeasuredChoice(['slow', 'wrong', 'broken', 'fast'], repeats=2)
    fns = dict(slow=slow, fast=fast, wrong=wrong, broken=broken)
    assert torch.equal(choice('k', fns), torch.ones(3))
    assert choice.chosen == {'k': 'fast'} and set(choice.timings['k']) == {'slow', 'fast'}
    calls.clear()
    choice('k', fns)
    assert calls == ['fast']  # decided once per key
    choice('other', {'slow': slow})  # a key where only the reference applies
    assert choice.chosen['other'] == 'slow'
    assert choice.summary() == {'slow': 1, 'wrong': 0, 'broken': 0, 'fast': 1}
    with pytest.raises(RuntimeError, match='no such kernel'):  # the reference must work
        MeasuredChoice(['broken', 'fast'])('k', fns)


@pytest.mark.parametrize('name', NAMES)
def test_an_optimized_model_can_be_differentiated(name):
    """The pre-packed and fused routes have no backward: a call that needs input gradients
    (saliency maps) runs the standard ops and gives the eval model's gradients."""
    from mmhiri.runtime import optimize
    model = built(name, out_indices=out_indices(name))
    routed = optimize(copy.deepcopy(model), layout='channels_last')
    for kind, candidate in (('RoutedLinear', 'onednn'), ('RoutedConv2d', 'prepacked'),
                            ('RoutedMultiheadAttention', 'onednn16')):
        force(routed, kind, candidate)
    for p in list(model.parameters()) + list(routed.parameters()):
        p.requires_grad_(False)
    grads = []
    for m in (model, routed):
        x = torch.randn(1, 3, 67, 93, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        sum(o.square().mean() for o in m(x)).backward()
        grads.append(x.grad)
    assert (grads[0] - grads[1]).abs().max() <= 1e-4 * grads[0].abs().max()


@pytest.mark.parametrize('cin,cout,k,stride,groups', [(8, 16, 3, 1, 1), (16, 16, 3, 2, 16),
                                                      (12, 24, 1, 1, 1), (64, 16, 3, 1, 4)])
@pytest.mark.parametrize('candidate', ['conv', 'prepacked', 'transposed'])
def test_routed_conv_follows_its_weights_and_copies(cin, cout, k, stride, groups, candidate):
    from mmhiri.runtime.layers import RoutedConv2d
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups).eval()
    routed = RoutedConv2d.from_conv(conv)
    routed.choice.forced = candidate if candidate != 'transposed' or routed.reducing_grouped \
        else 'conv'
    assert routed.weight is conv.weight and set(routed.state_dict()) == set(conv.state_dict())
    with torch.no_grad():
        for fmt in (torch.channels_last, torch.contiguous_format):
            for hw in [(17, 23), (8, 8), (17, 23)]:  # a new size re-packs, the old one again
                x = torch.randn(2, cin, *hw).contiguous(memory_format=fmt)
                want, got = conv(x), routed(x)
                assert got.shape == want.shape
                assert (got - want).abs().max() <= 1e-5 * want.abs().max(), (fmt, hw)
        state = {n: torch.randn_like(t) for n, t in conv.state_dict().items()}
        routed.load_state_dict(state)  # in place: the derived weights follow
        x = torch.randn(1, cin, 17, 23).contiguous(memory_format=torch.channels_last)
        want = torch.nn.functional.conv2d(x, state['weight'], state['bias'], stride, k // 2, 1,
                                          groups)
        assert (routed(x) - want).abs().max() <= 1e-5 * want.abs().max()
        buf = io.BytesIO()
        torch.save(routed, buf)
        buf.seek(0)
        for other in (copy.deepcopy(routed), torch.load(buf, weights_only=False)):
            assert other._cache is None or other._cache is not routed._cache
            assert (other(x) - want).abs().max() <= 1e-5 * want.abs().max()
    routed(torch.randn(1, cin, 9, 9)).sum().backward()  # gradients: the standard op
    assert conv.weight.grad is not None


@pytest.mark.parametrize('gelu', [False, True])
@pytest.mark.parametrize('candidate', ['linear', 'onednn'])
def test_routed_linear_follows_its_weights(gelu, candidate):
    from mmhiri.runtime.layers import RoutedLinear
    torch.manual_seed(0)
    linear = nn.Linear(24, 40)
    routed = RoutedLinear.from_linear(linear, gelu=gelu)
    routed.choice.forced = candidate
    assert set(routed.state_dict()) == set(linear.state_dict())

    def want(x, w=linear.weight, b=linear.bias):
        out = torch.nn.functional.linear(x, w, b)
        return torch.nn.functional.gelu(out) if gelu else out

    with torch.no_grad():
        for shape in [(2, 17, 24), (5, 24), (3, 4, 6, 24), (2, 17, 24)]:
            x = torch.randn(*shape)
            assert (routed(x) - want(x)).abs().max() <= 1e-5 * want(x).abs().max(), shape
        x = torch.randn(8, 24).t().contiguous().t()  # strided rows
        assert (routed(x) - want(x)).abs().max() <= 1e-5 * want(x).abs().max()
        state = {n: torch.randn_like(t) for n, t in linear.state_dict().items()}
        routed.load_state_dict(state)
        x = torch.randn(2, 17, 24)
        ref = want(x, state['weight'], state['bias'])
        assert (routed(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
        assert (copy.deepcopy(routed)(x) - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize('b,n,heads,d,block', [
    (1, 100, 4, 16, 64 << 20),  # one block
    (2, 77, 3, 8, 4096),  # odd length, batch > 1, uneven query blocks
    (3, 65, 1, 32, 1),  # one query per block
])
def test_onednn_attention_matches_fused(b, n, heads, d, block):
    import torch.nn.functional as F

    from mmhiri.runtime.cpu import onednn_attention
    torch.manual_seed(0)
    qkv = torch.randn(b, n, 3, heads, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    want = F.scaled_dot_product_attention(q, k, v, scale=0.3).transpose(1, 2).reshape(
        b, n, heads * d)
    got = onednn_attention(qkv, 0.3, block)
    assert got.shape == want.shape
    assert (got - want).abs().max() / want.abs().max() < 1e-5


def test_optimize_refuses_what_it_cannot_prepare():
    from mmhiri.runtime import optimize
    with pytest.raises(TypeError, match='holds no HIRIViT, ViTAE or ViTAEv2 backbone'):
        optimize(nn.Conv2d(3, 3, 1).eval())
    with pytest.raises(RuntimeError, match=r'call \.eval\(\) first'):
        optimize(tiny_backbone('HIRIViT').train())
    with pytest.raises(ValueError, match="layout must be 'auto'"):
        optimize(tiny_backbone('HIRIViT').eval(), layout='nhwc')


IMPORT_PROBE = r'''
import os, sys, traceback
reads = []
class Watched(type(os.environ)):
    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)
    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)
    def _note(self, key):  # the code that asked: the innermost frame outside os.py
        for frame in reversed(traceback.extract_stack()[:-2]):
            if frame.filename.endswith(('os.py', '<frozen os>')):
                continue
            if '/mmhiri/' in frame.filename.replace('\\', '/'):
                reads.append((key, frame.filename, frame.lineno))
            return
os.environ.__class__ = Watched
import torch
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as prof:
    import mmhiri, mmhiri.models, mmhiri.runtime, mmhiri.runtime.engines  # noqa
ops = sorted({e.key for e in prof.key_averages()})
print('OPS', ops)
print('READS', reads)
'''


def test_import_runs_no_kernel_and_reads_no_environment():
    out = subprocess.run([sys.executable, '-c', IMPORT_PROBE], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(' ', 1) for line in out.stdout.splitlines()
                 if line.startswith(('OPS ', 'READS ')))
    assert lines['OPS'] == '[]', lines['OPS']
    assert lines['READS'] == '[]', lines['READS']
