"""ViTAE / ViTAEv2: official golden outputs, checkpoint conversion, any input size, sizes."""
import json
import os

import pytest
import torch

from mmhiri.models import ViTAE, ViTAEv2
from mmhiri.models.converters import ConversionError, check_load, convert_vitae, unwrap_checkpoint


def _fixture(fixtures_dir, name):
    d = os.path.join(fixtures_dir, name)
    kw = json.load(open(os.path.join(d, 'kwargs.json')))['resolved_kwargs']
    load = lambda f: torch.load(os.path.join(d, f))  # noqa: E731
    feats = load('features.pt') if os.path.exists(os.path.join(d, 'features.pt')) else None
    return kw, load('state_dict.pt'), load('inputs.pt'), load('outputs.pt'), feats


def v2_arch(kw):
    """Our ViTAEv2 arch dict from the official constructor arguments."""
    return dict(embed_dims=kw['embed_dims'], token_dims=kw['token_dims'], depths=kw['NC_depth'],
                rc_heads=kw['RC_heads'], nc_heads=kw['NC_heads'],
                strides=kw['downsample_ratios'], kernel_sizes=kw['kernel_size'],
                dilations=kw['dilations'], attn_types=kw['NC_tokens_type'],
                mlp_ratio=kw['mlp_ratio'], rc_groups=kw['RC_group'], nc_groups=kw['NC_group'])


def v1_arch(kw):
    n = kw['stages']
    types = {'performer': 'performer', 'performer_less': None}
    return dict(embed_dims=kw['embed_dims'], token_dims=kw['token_dims'], depths=kw['NC_depth'],
                nc_heads=kw['NC_heads'], strides=kw['downsample_ratios'],
                kernel_sizes=kw['kernel_size'][:n], dilations=kw['dilations'][:n],
                rc_types=[types[t] for t in kw['RC_tokens_type']], rc_groups=kw['RC_group'],
                nc_groups=kw['NC_group'], mlp_ratio=kw['mlp_ratio'])


def test_vitaev2_detection_fixture(fixtures_dir):
    kw, sd, inputs, outputs, _ = _fixture(fixtures_dir, 'vitaev2_det_tiny')
    assert kw['window_size'] == 7 and kw['RC_tokens_type'] == kw['NC_tokens_type']
    model = ViTAEv2(v2_arch(kw), window_size=kw['window_size'])
    converted, dropped = convert_vitae(sd)
    assert dropped == []
    check_load(model, converted)
    model.eval()
    assert inputs.keys() == outputs.keys() and len(inputs) == 3
    for key, x in inputs.items():
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == len(outputs[key]) == 4
        for ours, ref in zip(outs, outputs[key]):
            assert ours.shape == ref.shape
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        print(f'vitaev2_det_tiny {key}: max |ours - official| = '
              f'{max((o - r).abs().max().item() for o, r in zip(outs, outputs[key])):.2e}')


@pytest.mark.parametrize('name', ['vitaev2_cls_tiny', 'vitae_cls_tiny'])
def test_classifier_fixtures_backbone_features(fixtures_dir, name):
    kw, sd, inputs, outputs, feats = _fixture(fixtures_dir, name)
    if name.startswith('vitaev2'):
        model = ViTAEv2(v2_arch(kw), window_size=kw['window_size'])
    else:
        model = ViTAE(v1_arch(kw), out_indices=(0, 1, 2))
    converted, dropped = convert_vitae(sd)
    assert 'head.weight' in dropped and 'head.bias' in dropped
    assert all(k.startswith('head.') or k.endswith('relative_position_index') for k in dropped)
    check_load(model, converted)
    model.eval()
    for key, x in inputs.items():
        with torch.no_grad():
            outs = model(x)
        assert len(outs) == len(feats[key])
        for ours, ref in zip(outs, feats[key]):
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        print(f'{name} {key}: max |ours - official| over stage maps = '
              f'{max((o - r).abs().max().item() for o, r in zip(outs, feats[key])):.2e}')


def test_performer_projection_is_loaded_not_regenerated(fixtures_dir):
    _, sd, _, _, _ = _fixture(fixtures_dir, 'vitae_cls_tiny')
    converted, _ = convert_vitae(sd)
    torch.testing.assert_close(converted['stages.0.reduction.attn.w'], sd['layers.0.RC.attn.w'])
    model = ViTAE(v1_arch(_fixture(fixtures_dir, 'vitae_cls_tiny')[0]))
    assert 'stages.0.reduction.attn.w' in model.state_dict()
    assert 'stages.0.reduction.attn.w' not in dict(model.named_parameters())


def test_converter_is_idempotent_and_unwraps(fixtures_dir):
    _, sd, _, _, _ = _fixture(fixtures_dir, 'vitaev2_cls_tiny')
    once, _ = convert_vitae(sd)
    twice, dropped = convert_vitae(once)
    assert dropped == [] and list(twice) == list(once)
    assert all(torch.equal(once[k], twice[k]) for k in once)
    with_head, _ = convert_vitae(sd, with_head=True)
    assert convert_vitae(with_head, with_head=True)[0].keys() == with_head.keys()
    # a converted file re-converted with the other layout gets that layout
    bare, dropped = convert_vitae(with_head, with_head=False)
    assert list(bare) == list(once) and dropped == ['head.fc.weight', 'head.fc.bias']
    with pytest.raises(ConversionError, match='no classifier head'):
        convert_vitae(once, with_head=True)
    # official checkpoint wrappers and DDP prefixes
    wrapped = {'state_dict': {'module.' + k: v for k, v in sd.items()},
               'state_dict_ema': dict(sd), 'epoch': 3}
    raw, source = unwrap_checkpoint(wrapped)
    assert source == 'state_dict_ema' and raw.keys() == sd.keys()
    raw, source = unwrap_checkpoint(wrapped, prefer_ema=False)
    assert source == 'state_dict' and raw.keys() == sd.keys()
    raw, source = unwrap_checkpoint({'model': sd})
    assert source == 'model'
    # a detector checkpoint: the backbone is kept, the rest listed
    det = {'backbone.' + k: v for k, v in sd.items() if not k.startswith('head.')}
    det['neck.conv.weight'] = torch.zeros(1)
    out, dropped = convert_vitae(det)
    assert 'neck.conv.weight' in dropped and 'stages.0.reduction.prm.convs.0.weight' in out


def test_converter_names_unknown_keys(fixtures_dir):
    _, sd, _, _, _ = _fixture(fixtures_dir, 'vitaev2_det_tiny')
    bad = dict(sd, **{'layers.0.RC.attn.gamma': torch.zeros(1), 'pos_drop.x': torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"layers\.0\.RC\.attn\.gamma.*pos_drop\.x"):
        convert_vitae(bad)
    converted, _ = convert_vitae(sd)
    converted.pop('stages.3.blocks.0.norm1.weight')
    with pytest.raises(ConversionError, match=r"missing \['stages\.3\.blocks\.0\.norm1\.weight'\]"):
        check_load(ViTAEv2(v2_arch(_fixture(fixtures_dir, 'vitaev2_det_tiny')[0])), converted)


@pytest.mark.parametrize('hw', [(224, 224), (224, 320), (230, 301)])
def test_vitaev2_s_any_size(hw):
    model = ViTAEv2('s').eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *hw))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512]
    for o, s in zip(outs, (4, 8, 16, 32)):
        assert o.shape[-2:] == (-(-hw[0] // s), -(-hw[1] // s))
        assert torch.isfinite(o).all()


@pytest.mark.parametrize('hw', [(224, 224), (224, 320), (230, 301)])
def test_vitae_t_any_size(hw):
    model = ViTAE('t', out_indices=(0, 1, 2)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *hw))
    for o, s, c in zip(outs, (4, 8, 16), (64, 64, 256)):
        assert o.shape[1:] == (c, -(-hw[0] // s), -(-hw[1] // s))
    pooled = ViTAE('t', out_type='avg_featmap').eval()
    pooled.load_state_dict(model.state_dict())
    with torch.no_grad():
        vec = pooled(torch.rand(2, 3, *hw))[0]
    assert vec.shape == (2, 256)


def test_padding_only_where_official_branches_disagree(monkeypatch):
    """Sizes the official code accepts (H % 4 in {0, 3} at stride 4) are not padded, so they
    match it; the others are padded right/bottom by 1 or 2 pixels."""
    import mmhiri.models.layers.vitae_cells as cells
    pads = []
    real_pad = cells.F.pad

    def spy(x, pad, *args, **kwargs):
        pads.append(tuple(pad))
        return real_pad(x, pad, *args, **kwargs)

    monkeypatch.setattr(cells.F, 'pad', spy)
    cell = cells.ReductionCell(3, 4, 8, 4, 7, [1, 2, 3, 4], 'transformer').eval()
    for h in range(5, 40):
        pads.clear()
        with torch.no_grad():
            tokens, hw = cell(torch.rand(1, 3, h, h + 1))
        assert hw == (-(-h // 4), -(-(h + 1) // 4)) and tokens.shape[1] == hw[0] * hw[1]
        expected_h, expected_w = {0: 0, 3: 0, 2: 1, 1: 2}[h % 4], \
            {0: 0, 3: 0, 2: 1, 1: 2}[(h + 1) % 4]
        if expected_h or expected_w:
            assert pads == [(0, expected_w, 0, expected_h)], h
        else:
            assert pads == [], h


def _params_with_head(model, classes=1000):
    c = model.stage_channels[-1]
    return (sum(p.numel() for p in model.parameters()) + c * classes + classes) / 1e6


@pytest.mark.slow
@pytest.mark.parametrize('arch,paper,tol', [('s', 19.3, .01), ('48m', 48.7, .01), ('b', 89.7, .01)])
def test_vitaev2_params_table1(arch, paper, tol):
    assert abs(_params_with_head(ViTAEv2(arch)) / paper - 1) < tol


@pytest.mark.slow
@pytest.mark.parametrize('arch,paper,tol', [('t', 4.8, .02), ('6m', 6.5, .02), ('s', 23.6, .02)])
def test_vitae_params_table1(arch, paper, tol):
    assert abs(_params_with_head(ViTAE(arch)) / paper - 1) < tol


@pytest.mark.slow
def test_vitae_13m_follows_official_code():
    """The official code builds 10.83 M (heads 5, PCM groups 64); Table 1's 13.2 M is this layout
    with normal-cell PCM groups 16."""
    assert abs(_params_with_head(ViTAE('13m')) - 10.83) < 0.01
    table = ViTAE(dict(ViTAE.arch_zoo['13m'], nc_groups=[1, 1, 16]))
    assert abs(_params_with_head(table) / 13.2 - 1) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize('arch,paper', [('b', 89.3), ('l', 311.7)])
def test_vitae_vit_style_params(arch, paper):
    model = ViTAE(arch, out_type='avg_featmap')
    assert abs(_params_with_head(model) / paper - 1) < 0.01
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 112, 120))[0]
    assert out.shape == (1, model.stage_channels[0])


def test_drop_path_schedule_is_cumulative():
    """Linear in the global normal-cell index (the official code restarts each stage's slice at
    the previous stage's depth; we do not reproduce that)."""
    model = ViTAEv2('s', drop_path_rate=0.1)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks]
    expected = torch.linspace(0, 0.1, 14).tolist()
    assert rates == pytest.approx(expected)


@pytest.mark.slow
@pytest.mark.parametrize('arch,paper', [('s', 5.7), ('48m', 13.3), ('b', 24.3)])
def test_vitaev2_flops_table1(arch, paper):
    """FlopAnalyzer (multiply-adds of convs, linears, attention matmuls, norms) + the linear head."""
    from mmhiri.utils.flops import flop_analyzer
    model = ViTAEv2(arch, out_indices=(3, )).eval()
    analyzer = flop_analyzer(model, torch.rand(1, 3, 224, 224))
    flops = (analyzer.total() + model.stage_channels[-1] * 1000) / 1e9
    assert abs(flops / paper - 1) < 0.05, flops


def test_cli_reports_mismatch_by_name(fixtures_dir, tmp_path):
    """The converter CLI compares the result with every official size and names the keys that
    differ; --check makes a mismatch fatal with the names."""
    import subprocess
    import sys

    from conftest import ROOT
    cli = os.path.join(ROOT, 'tools/model_converters/vitae2mmhiri.py')
    src = os.path.join(fixtures_dir, 'vitaev2_det_tiny', 'state_dict.pt')
    out = subprocess.run([sys.executable, cli, src, str(tmp_path / 'a.pth')],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'matches no official size exactly; closest' in out.stdout
    assert 'missing [' in out.stdout and 'shape mismatches [' in out.stdout
    out = subprocess.run([sys.executable, cli, src, str(tmp_path / 'b.pth'), '--check',
                          'ViTAEv2:s'], capture_output=True, text=True)
    assert out.returncode != 0
    assert 'checkpoint does not match ViTAEv2: missing [' in out.stderr
    assert 'stages.0.blocks.1.norm1.weight' in out.stderr  # ViTAEv2-S has 2 cells in stage 0
