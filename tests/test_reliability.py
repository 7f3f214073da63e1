"""One clear line instead of a silent surprise or a long traceback: --resume with nothing to
resume or a folder, inputs too large for memory (tools/infer.py, get_flops.py) and export
arguments out of range (pytorch2onnx.py)."""
import importlib.util
import os
import re
import struct
import sys
import zlib

import pytest
import torch

from conftest import ROOT, run_script as run
from test_tools import cls_config  # noqa: F401  (the tiny classifier config fixture)

DET = 'configs/demo/mask_rcnn_hiri_demo.py'


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- --resume
def _checkpoint(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': {}, 'meta': {'seed': 5}}, path)
    return path


def test_resume_picks_the_newest_complete_checkpoint_of_a_folder(tmp_path):
    from mmhiri.utils.checkpointing import choose_resume
    run_dir = tmp_path / 'work_dirs' / 'a'
    _checkpoint(run_dir / 'iter_2.pth')
    newest = run_dir / 'iter_4.pth'
    newest.write_bytes(b'cut short')  # what a kill in a plain torch.save leaves
    assert choose_resume(str(run_dir), str(tmp_path / 'w')) == str(run_dir / 'iter_2.pth')
    assert choose_resume(str(run_dir / 'iter_2.pth'), 'unused') == str(run_dir / 'iter_2.pth')


def test_resume_with_nothing_to_resume_stops_and_names_other_runs(tmp_path, capsys,
                                                                  monkeypatch):
    from mmhiri.utils.checkpointing import choose_resume
    _checkpoint(tmp_path / 'runs' / 'demo' / 'epoch_1.pth')
    typo = tmp_path / 'runs' / 'dmeo'
    monkeypatch.chdir(tmp_path)
    _checkpoint(tmp_path / 'work_dirs' / 'newer' / 'epoch_3.pth')  # newer, but not a sibling
    with pytest.raises(SystemExit) as e:
        choose_resume('auto', str(typo))
    assert e.value.code == (
        f"--resume: nothing to resume in '{typo}' (no such folder); checkpoints of other runs: "
        f'runs/demo/epoch_1.pth, work_dirs/newer/epoch_3.pth. Pass --resume PATH (a checkpoint '
        'or a folder of them), or add --allow-fresh-start to start a new run when there is '
        'nothing to resume')
    typo.mkdir()
    with pytest.raises(SystemExit, match=r"in '.*dmeo' \(no checkpoint in it\)"):
        choose_resume(str(typo), 'unused')
    (typo / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(SystemExit, match=r'\(1 incomplete checkpoint\(s\), no complete one\)'):
        choose_resume('auto', str(typo))
    assert choose_resume('auto', str(typo), allow_fresh=True) is None
    assert 'starting a new run (--allow-fresh-start)' in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--resume: checkpoint not found: 'nope.pth'"):
        choose_resume('nope.pth', str(typo))


@pytest.mark.slow
def test_resume_from_the_command_line(cls_config, tmp_path):  # noqa: F811
    """tools/train.py: --resume into an empty work dir stops (it trained from scratch, exit
    0); --resume FOLDER resumes from the newest checkpoint in it (it was 'checkpoint not
    found'); --allow-fresh-start starts a new run when there is nothing to resume."""
    first = tmp_path / 'runs' / 'first'
    run('tools/train.py', str(cls_config), '--work-dir', str(first))
    empty = tmp_path / 'runs' / 'empty'
    out = run('tools/train.py', str(cls_config), '--work-dir', str(empty), '--resume',
              check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"--resume: nothing to resume in '{empty}' (no such folder); checkpoints of other runs: "
        f"{first / 'iter_2.pth'}") and last.endswith(
        '. Pass --resume PATH (a checkpoint or a folder of them), or add --allow-fresh-start '
        'to start a new run when there is nothing to resume'), last
    assert not empty.exists()
    out = run('tools/train.py', str(cls_config), '--work-dir', str(tmp_path / 'more'),
              '--resume', str(first), '--cfg-options', 'train_cfg.max_iters=3')
    assert f'--resume: resuming from {first / "iter_2.pth"}' in out.stderr
    assert re.search(r'resumed epoch: \d+, iter: 2', out.stdout + out.stderr)
    assert (tmp_path / 'more' / 'iter_3.pth').is_file()
    out = run('tools/train.py', str(cls_config), '--work-dir', str(empty), '--resume',
              '--allow-fresh-start', '--cfg-options', 'train_cfg.max_iters=1')
    assert 'starting a new run (--allow-fresh-start)' in out.stderr
    assert (empty / 'iter_1.pth').is_file()


# ----------------------------------------------------------------------------- memory
def test_forward_memory_fit_predicts_a_larger_size():
    """The estimate from 128x128 and 256x256 gives the peak at 512x384 within 5 %."""
    from conftest import tiny_backbone
    from mmhiri.utils.memory import fit_forward_memory, peak_bytes
    torch.manual_seed(0)
    model = tiny_backbone('HIRIViT').eval()

    def forward(h, w):
        return model(torch.rand(1, 3, h, w))

    fit = fit_forward_memory(forward)
    measured = peak_bytes(lambda: forward(512, 384))
    assert measured > 12 * 512 * 384  # at least the input itself, 3 float32 a pixel
    assert abs(fit(512 * 384) - measured) < 0.05 * measured
    assert fit.max_pixels(fit(512 * 384)) == pytest.approx(512 * 384)


def _png_header(path, w, h):
    """A PNG that declares w x h pixels and holds 16 bytes of them: its header is all a size
    check reads."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + \
            struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    header = chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + header + chunk(b'IDAT', zlib.compress(b'\0' * 16))
                     + chunk(b'IEND', b''))
    return path


@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory):
    """The demo detector at its initial weights, saved as tools/train.py saves it."""
    from mmengine.registry import DefaultScope

    import mmhiri  # noqa: F401
    from mmhiri.apis import load_config
    from mmdet.registry import MODELS
    cfg = load_config(os.path.join(ROOT, DET))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('det') / 'det.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': dict(cfg.metainfo)}}, path)
    return str(path)


def test_infer_refuses_an_image_too_large_for_memory(det_checkpoint, tmp_path, monkeypatch):
    """A 10000x10000 image and the demo Mask R-CNN: 100 masks at the image size are 10 GB (an
    allocation that used to fail after a long traceback). With 8 GB available the run stops
    before anything runs, naming the image, the parts and the size that fits."""
    infer = _load('tools/infer.py', 'infer')
    import mmhiri.utils.memory as memory
    big = _png_header(tmp_path / 'big.png', 10000, 10000)
    monkeypatch.setattr(memory, 'available_memory', lambda: 8e9)
    with pytest.raises(SystemExit) as e:
        infer.main([str(big), os.path.join(ROOT, DET), '--weights', det_checkpoint, '--out-dir',
                    str(tmp_path / 'out')])
    m = re.fullmatch(
        rf"error: image '{re.escape(str(big))}' \(10000x10000\) needs at least (\d+\.\d) GB to run "
        r'\(the decoded image 0\.3 GB, the drawing 0\.6 GB, 100 masks at the image size 10\.0 GB, '
        r'the backbone and neck at 256x256 (\S+) GB\); 8\.0 GB of memory is available: '
        r'downscale it to at most (\d+)x(\d+), or keep fewer detections \(--cfg-options '
        r'model\.test_cfg\.rcnn\.max_per_img=N\), or skip the drawing \(--no-save-vis\)',
        e.value.code)
    assert m, e.value.code
    assert 10.9 <= float(m.group(1)) <= 11.2
    assert 8000 <= int(m.group(3)) <= 8600 and m.group(3) == m.group(4)
    assert not (tmp_path / 'out' / 'preds').exists()


@pytest.mark.slow
def test_infer_command_line_size_check(det_checkpoint, tmp_path):
    """The same from the command line, with an image no machine holds (10^6 x 10^6)."""
    huge = _png_header(tmp_path / 'huge.png', 10 ** 6, 10 ** 6)
    out = run('tools/infer.py', str(huge), DET, '--weights', det_checkpoint, '--out-dir',
              str(tmp_path / 'o'), '--no-save-vis', check=False)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: image '{huge}' (1000000x1000000) needs at least ") and \
        'of memory is available: downscale it to at most ' in last, last


def test_get_flops_refuses_a_shape_too_large_for_memory(monkeypatch, capsys):
    """--shape 20000 20000 with the demo config: one line with the estimate and a shape that
    fits, before the 4.8 GB input is allocated (it used to fail after a long traceback)."""
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'analysis'))
    get_flops = _load('tools/analysis/get_flops.py', 'get_flops_cli')
    import mmhiri.utils.memory as memory
    monkeypatch.setattr(memory, 'available_memory', lambda: 8e9)
    with pytest.raises(SystemExit) as e:
        get_flops.main([os.path.join(ROOT, DET), '--shape', '20000', '20000'])
    m = re.fullmatch(r'error: --shape 20000 20000: the forward of MaskRCNN at that size needs '
                     r'about (\d+\.\d) GB \(estimated from its memory at two small sizes, '
                     r'growing with the pixels\); 8\.0 GB is available: --shape (\d+) (\d+) '
                     r'would fit', e.value.code)
    assert m, e.value.code
    needed, side = float(m.group(1)), int(m.group(2))
    # at least the input (4.8 GB) and the stem's first output (16 channels at stride 2, 6.4 GB)
    assert needed > 11.2 and m.group(2) == m.group(3)
    assert abs(side - 20000 * (8 / needed) ** 0.5) < 0.02 * side


# ----------------------------------------------------------------------------- pytorch2onnx
HIRI_ARCHS = "['b', 'base', 'l', 'large', 's', 'small']"


@pytest.mark.parametrize('args,message', [
    (['--shape', '16', '16'], '--shape: H and W must each be in [32, 8192] (the range of the '
     'exported dynamic height and width), got 16 16'),
    (['--shape', '448', '9000'], 'got 448 9000'),
    (['--arch', '{"channels": [8, 16'], "--arch: not valid JSON (Expecting ',' delimiter at "
     f"character 19): '{{\"channels\": [8, 16'; expected one of {HIRI_ARCHS} or a JSON object "
     'of HIRIViT arch settings'),
    (['--arch', '[1, 2]'], '--arch: expected a JSON object of HIRIViT arch settings'),
    (['--arch', 'xl'], f"--arch: HIRIViT has no arch 'xl'; expected one of {HIRI_ARCHS}"),
    (['--threads', '0'], '--threads must be at least 1, got 0'),
])
def test_export_arguments_name_the_valid_range(args, message, capsys):
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'deployment'))
    import pytorch2onnx
    with pytest.raises(SystemExit) as e:
        pytorch2onnx.parse_args(['--backbone', 'HIRIViT', *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_export_argument_error_from_the_command_line():
    out = run('tools/deployment/pytorch2onnx.py', '--backbone', 'HIRIViT', '--shape', '16', '16',
              check=False)
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        'pytorch2onnx.py: error: --shape: H and W must each be in [32, 8192] (the range of the '
        'exported dynamic height and width), got 16 16')


def test_export_custom_arch_missing_keys_is_named():
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'deployment'))
    import pytorch2onnx
    with pytest.raises(SystemExit) as e:
        pytorch2onnx.main(['--backbone', 'HIRIViT', '--arch', '{"channels": [8, 16]}'])
    assert str(e.value.code).startswith(
        "error: --arch: HIRIViT: custom arch is missing keys ['depths', 'expansions', ")
