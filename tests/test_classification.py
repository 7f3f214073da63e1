"""mmpretrain classification: our configs build and run; converted official weights give the
official logits through mmpretrain's ImageClassifier."""
import glob
import json
import os

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'imagenet', '*.py')))
TABLE2 = {'s': 34.8, 'b': 54.4, 'l': 94.4}


def build_classifier(cfg_model):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    import mmhiri  # noqa: F401  (what custom_imports does)
    return MODELS.build(cfg_model)


def test_every_imagenet_config_is_here():
    names = {os.path.basename(p) for p in CONFIGS}
    for a in 'sbl':
        for r in (224, 384, 448, 768):
            assert f'hiri_{a}_{r}.py' in names
    assert {'vitaev2_s_224.py', 'vitaev2_48m_224.py', 'vitaev2_b_224.py', 'vitae_t_224.py',
            'vitae_6m_224.py', 'vitae_13m_224.py', 'vitae_s_224.py'} <= names


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports['imports'] == ['mmhiri']
    model = build_classifier(cfg.model).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 1000)
    name = os.path.basename(path)
    if name.startswith('hiri_'):
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params / TABLE2[name[5]] - 1) < 0.02, params


@pytest.mark.slow
@pytest.mark.parametrize('res', [224, 384, 448, 768])
def test_hiri_s_classifier_at_paper_resolutions(res):
    cfg = Config.fromfile(os.path.join(ROOT, f'configs/imagenet/hiri_s_{res}.py'))
    # the configured pipeline really crops to this resolution
    crops = [t for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] in ('CenterCrop', 'Resize')]
    assert (crops[-1].get('crop_size') or crops[-1].get('scale')) == res
    model = build_classifier(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, res, res), stage='backbone')
        logits = model(torch.rand(1, 3, res, res), mode='tensor')
    assert feats[0].shape == (1, 512, -(-res // 64), -(-res // 64))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def _official(fixtures_dir, name):
    d = os.path.join(fixtures_dir, name)
    kw = json.load(open(os.path.join(d, 'kwargs.json')))['resolved_kwargs']
    return (kw, torch.load(os.path.join(d, 'state_dict.pt')), torch.load(os.path.join(d, 'inputs.pt')),
            torch.load(os.path.join(d, 'outputs.pt')))


@pytest.mark.parametrize('name', ['vitaev2_cls_tiny', 'vitae_cls_tiny'])
def test_with_head_reproduces_official_logits(fixtures_dir, name, tmp_path):
    """tools/model_converters/vitae2mmhiri.py --with-head -> strict load into mmpretrain's
    ImageClassifier (our documented classifier configs) -> the official logits."""
    import subprocess
    import sys

    from test_vitae import v1_arch, v2_arch
    kw, _, inputs, outputs = _official(fixtures_dir, name)
    dst = tmp_path / 'converted.pth'
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/model_converters/vitae2mmhiri.py'),
                          os.path.join(fixtures_dir, name, 'state_dict.pt'), str(dst), '--with-head'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if name.startswith('vitaev2'):
        cfg = Config.fromfile(os.path.join(ROOT, 'configs/_base_/models/vitaev2_cls.py'))
        cfg.model.backbone.arch = v2_arch(kw)
    else:
        cfg = Config.fromfile(os.path.join(ROOT, 'configs/_base_/models/vitae_cls.py'))
        cfg.model.backbone.arch = v1_arch(kw)
    cfg.model.head.num_classes = kw['num_classes']
    cfg.model.head.in_channels = kw['token_dims'][-1]
    model = build_classifier(cfg.model)
    state = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    model.eval()
    for key, x in inputs.items():
        with torch.no_grad():
            logits = model(x, mode='tensor')
        torch.testing.assert_close(logits, outputs[key], atol=1e-5, rtol=0)
        print(f'{name} {key}: max |logits - official| = '
              f'{(logits - outputs[key]).abs().max().item():.2e}')
