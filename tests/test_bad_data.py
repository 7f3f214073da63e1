"""A training image or annotation file that cannot be read stops tools/train.py with its path
(it used to be a bare cv2.error / JSONDecodeError naming neither)."""
import json

import pytest

from conftest import run_script as run


@pytest.fixture(scope='module')
def instances(tmp_path_factory):
    from mmhiri.datasets.synthetic import main as make_data
    root = tmp_path_factory.mktemp('bad')
    make_data([str(root), '--num-train', '8', '--num-val', '2', '--only', 'instances'])
    return root / 'instances'


def train(data_root, work):
    return run('tools/train.py', 'configs/demo/mask_rcnn_hiri_demo.py', '--work-dir', str(work),
               '--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={data_root}/',
               'train_cfg.max_epochs=1', check=False)


@pytest.mark.slow
def test_zero_byte_training_image_is_named(instances, tmp_path):
    ann = json.loads((instances / 'annotations' / 'instances_train.json').read_text())
    name = ann['images'][3]['file_name']
    path = instances / 'images' / 'train' / name
    data = path.read_bytes()
    try:
        path.write_bytes(b'')
        out = train(instances, tmp_path / 'w')
    finally:
        path.write_bytes(data)
    assert out.returncode != 0
    err = out.stderr.strip().splitlines()
    assert err[-1].startswith('error: training sample ') and str(path) in err[-1], err[-5:]
    assert 'could not be loaded' in err[-1]


@pytest.mark.slow
def test_truncated_annotation_file_is_named(instances, tmp_path):
    import shutil
    broken = tmp_path / 'instances'
    shutil.copytree(instances, broken)
    ann = broken / 'annotations' / 'instances_train.json'
    text = ann.read_text()
    ann.write_text(text[:len(text) // 2])
    out = train(broken, tmp_path / 'w')
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot build the training dataset CocoDataset from ')
    assert str(ann) in last and 'JSONDecodeError' in last, last
