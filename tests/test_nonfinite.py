"""One NaN or infinite pixel is refused with one line before it can reach a BatchNorm."""
import pytest
import torch

from conftest import run_script, tiny_backbone
from test_speed_paths import NAMES


@pytest.mark.parametrize('name', NAMES)
def test_non_finite_input_is_refused_before_the_batchnorms(name):
    from mmhiri.models import NonFiniteInputError
    model = tiny_backbone(name).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    x = torch.rand(2, 3, 64, 64)
    x[1, 0, 5, 7] = float('nan')
    x[0, 2, 1, 1] = float('inf')
    with pytest.raises(NonFiniteInputError, match=r'1 NaN and 1 infinite values in a '
                       r'2x3x64x64 batch.*check_finite=False'):
        model(x)
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k]), k
    model.check_finite = False  # the switch: no check, and the NaN goes through
    out = model(x)
    assert not torch.isfinite(out[-1]).all()


def test_check_finite_is_a_constructor_switch():
    model = tiny_backbone('HIRIViT', check_finite=False).eval()
    assert not model.check_finite
    with torch.no_grad():
        model(torch.full((1, 3, 64, 64), float('nan')))


@pytest.mark.slow
def test_train_py_stops_with_one_line_on_a_non_finite_batch(tmp_path):
    """A preprocessor that divides by a zero std turns every pixel infinite: tools/train.py
    stops with one error line naming the backbone and the count."""
    from mmhiri.datasets.synthetic import main as make_data
    make_data([str(tmp_path / 'data'), '--num-train', '4', '--num-val', '2', '--only',
               'instances'])
    out = run_script('tools/train.py', 'configs/demo/mask_rcnn_hiri_demo.py', '--work-dir',
                     str(tmp_path / 'w'), '--no-validate', '--cfg-options',
                     f'train_dataloader.dataset.data_root={tmp_path}/data/instances/',
                     'train_cfg.max_epochs=1', 'model.data_preprocessor.std=[0,0,0]',
                     check=False)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('error: HIRIViT got a non-finite input: ') and \
        'infinite values' in last, out.stderr[-2000:]
