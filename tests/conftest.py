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
from mmhiri.models.tiny import TINY_HIRI, TINY_V1, TINY_V2, tiny_backbone  # noqa: E402,F401


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


def run_script(*args, check=True):
    """Run ``python ARGS...`` from the repository root as a user would; assert success."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return out
