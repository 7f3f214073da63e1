"""Our backbones are found from every framework's registry, in both spellings."""
import subprocess
import sys

import pytest

FRAMEWORKS = ['mmdet', 'mmseg', 'mmpose', 'mmpretrain']
BACKBONES = {
    'HIRIViT': dict(arch=dict(channels=[8, 8, 8, 8, 8], depths=[1, 1, 1, 1, 1],
                              expansions=[1, 1, 1, 1, 1], num_heads=[None, None, None, 1, 1],
                              block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                              stem_channels=8, irds_a_expansion=1, irds_b_expansion=1)),
    'ViTAEv2': dict(arch=dict(embed_dims=[4, 4, 4, 4], token_dims=[4, 4, 4, 4], depths=[0, 0, 0, 1],
                              rc_heads=[1] * 4, nc_heads=[1] * 4, strides=[4, 2, 2, 2],
                              kernel_sizes=[7, 3, 3, 3], dilations=[[1], [1], [1], [1]],
                              attn_types=['window', 'window', 'transformer', 'transformer'],
                              mlp_ratio=1., rc_groups=[1] * 4, nc_groups=[1] * 4)),
    'ViTAE': dict(arch='t'),
}


@pytest.mark.parametrize('framework', FRAMEWORKS)
def test_build_from_framework_registry(framework):
    """Under the framework's default scope: 'mmhiri.X' works without any import of ours, and
    'X' works after custom_imports=['mmhiri']."""
    import importlib

    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.utils import import_modules_from_strings
    registry = importlib.import_module(f'{framework}.registry').MODELS
    init_default_scope(framework)
    assert DefaultScope.get_current_instance().scope_name == framework
    from mmhiri.registry import MODELS
    for name, kwargs in BACKBONES.items():
        scoped = registry.build(dict(type=f'mmhiri.{name}', **kwargs))
        assert type(scoped) is MODELS.get(name)
    import_modules_from_strings(['mmhiri'])  # what custom_imports does
    for name, kwargs in BACKBONES.items():
        plain = registry.build(dict(type=name, **kwargs))
        assert type(plain) is MODELS.get(name)


@pytest.mark.parametrize('framework', FRAMEWORKS)
def test_scoped_name_needs_no_import_of_mmhiri(framework):
    """In a fresh interpreter, each framework resolves 'mmhiri.HIRIViT' by itself (mmengine
    imports mmhiri.registry for the scope prefix)."""
    code = ('import sys\n'
            'from mmengine.registry import init_default_scope\n'
            f'from {framework}.registry import MODELS\n'
            f'init_default_scope("{framework}")\n'
            'assert "mmhiri" not in sys.modules\n'
            f'm = MODELS.build(dict(type="mmhiri.HIRIViT", arch={BACKBONES["HIRIViT"]["arch"]!r}))\n'
            'print(type(m).__module__)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'mmhiri.models.backbones.hiri_vit' in out.stdout


def test_import_mmhiri_stays_light():
    code = ('import sys, mmhiri\n'
            'heavy = [m for m in ("mmdet", "mmseg", "mmpose", "mmpretrain", "mmcv") '
            'if m in sys.modules]\n'
            'print(heavy)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == '[]'
