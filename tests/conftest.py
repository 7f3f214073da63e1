import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Golden outputs of the official ViTAE code, kept in the repository (tests/data/README.md).
FIXTURES = os.environ.get('MMHIRI_FIXTURES',
                          os.path.join(ROOT, 'tests', 'data', 'vitae_official_tiny'))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Tiny widths for wiring tests (the real widths are exercised where a paper number is the point).
TINY_HIRI = dict(channels=[8, 16, 16, 32, 32], depths=[1, 1, 1, 1, 1], expansions=[2, 2, 2, 2, 2],
                 num_heads=[None, None, None, 2, 2],
                 block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                 stem_channels=8, irds_a_expansion=2, irds_b_expansion=2)
TINY_V2 = dict(embed_dims=[8, 8, 16, 32], token_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1],
               rc_heads=[1, 1, 2, 4], nc_heads=[1, 2, 4, 8], strides=[4, 2, 2, 2],
               kernel_sizes=[7, 3, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 2]],
               attn_types=['window', 'window', 'transformer', 'transformer'], mlp_ratio=4.,
               rc_groups=[1, 2, 4, 8], nc_groups=[1, 4, 8, 16])
TINY_V1 = dict(embed_dims=[8, 8, 16], token_dims=[8, 8, 32], depths=[0, 0, 2], nc_heads=[1, 1, 4],
               strides=[4, 2, 2], kernel_sizes=[7, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2]],
               rc_types=['performer', 'performer', None], rc_groups=[1, 1, 1], nc_groups=[1, 1, 8],
               mlp_ratio=2.)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run where torch sees a GPU and are skipped elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (torch.cuda.is_available() is False)')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fixtures_dir():
    if not os.path.isdir(FIXTURES):
        pytest.fail(f'official ViTAE fixtures not found at {FIXTURES} (set MMHIRI_FIXTURES)')
    return FIXTURES


def tiny_backbone(name, **kwargs):
    from mmhiri.models import HIRIViT, ViTAE, ViTAEv2
    if name == 'HIRIViT':
        return HIRIViT(TINY_HIRI, **kwargs)
    if name == 'ViTAEv2':
        return ViTAEv2(TINY_V2, **kwargs)
    return ViTAE(TINY_V1, **kwargs)


def run_script(*args, check=True):
    """Run ``python ARGS...`` from the repository root as a user would; assert success."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return out
