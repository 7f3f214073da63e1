"""CPU engines: the folded backbone (+ neck) exported once and run by ONNX Runtime and
OpenVINO gives PyTorch's features (fp32) or close ones (OpenVINO bf16), at several sizes and
batches; tools/test.py --backend evaluates a checkpoint that way."""
import pickle

import pytest
import torch

from conftest import run_script, tiny_backbone
from test_speed_paths import max_rel, randomise_bn

pytest.importorskip('onnxruntime')
pytest.importorskip('openvino')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from mmhiri.runtime.engines import BackboneNeck, export_onnx
    torch.manual_seed(0)
    model = BackboneNeck(randomise_bn(tiny_backbone('ViTAEv2'))).eval()
    model.backbone.switch_to_deploy()
    path = str(tmp_path_factory.mktemp('engine') / 'model.onnx')
    export_onnx(model, path, (128, 128))
    return model, path


def cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize('engine,precision', [('onnxruntime', 'fp32'), ('openvino', 'fp32'),
                                              ('openvino', 'bf16')])
def test_engine_gives_pytorch_features(exported, engine, precision):
    from mmhiri.runtime.engines import OnnxRuntimeEngine, OpenVINOEngine
    model, path = exported
    run = OnnxRuntimeEngine(path, threads=2) if engine == 'onnxruntime' else \
        OpenVINOEngine(path, precision, threads=2)
    # sizes with at least 4x4 tokens in the last stage: on rows of 4 tokens (a 64x64 input)
    # OpenVINO 2026.4's CPU attention was 9e-2 off in f32 (ONNX Runtime: 6e-7)
    for shape in [(1, 3, 128, 128), (2, 3, 131, 189), (1, 3, 160, 96)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x)
        got = run(x)
        assert [g.shape for g in got] == [w.shape for w in want]
        if precision == 'fp32':
            assert max_rel(want, got) < 1e-4, shape
        else:
            assert min(cosine(g, w) for g, w in zip(got, want)) > 0.99, shape


def test_engine_arguments_are_checked():
    from mmhiri.runtime.engines import build_engine
    with pytest.raises(ValueError, match='bf16 is an OpenVINO precision'):
        build_engine(torch.nn.Identity(), 'onnxruntime', 'bf16')
    with pytest.raises(ValueError, match='engine must be one of'):
        build_engine(torch.nn.Identity(), 'tensorrt')


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """The demo Mask R-CNN with its initial weights, and a few synthetic test scenes."""
    from mmhiri.apis import build_in_scope, load_config
    from mmhiri.datasets.synthetic import main as make_data
    root = tmp_path_factory.mktemp('demo')
    make_data([str(root / 'data'), '--num-train', '2', '--num-val', '3', '--only',
               'instances'])
    cfg = load_config('configs/demo/mask_rcnn_hiri_demo.py')
    torch.manual_seed(0)
    model = build_in_scope(cfg, cfg.model)
    model.init_weights()
    randomise_bn(model.backbone)
    path = root / 'demo.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return root, path


def run_test_py(root, ckpt, work, *extra, cfg=(), check=True):
    data = f'{root}/data/instances'
    return run_script('tools/test.py', 'configs/demo/mask_rcnn_hiri_demo.py', str(ckpt),
                      '--work-dir', str(work), *extra, '--cfg-options',
                      f'test_dataloader.dataset.data_root={data}/',
                      f'test_evaluator.ann_file={data}/annotations/instances_val.json', *cfg,
                      check=check)


def predict(root, ckpt, work, *extra, cfg=()):
    """tools/test.py on the demo scenes; the raw predictions it dumps (--out)."""
    out = work / 'preds.pkl'
    res = run_test_py(root, ckpt, work, '--out', str(out), *extra, cfg=cfg)
    return pickle.load(open(out, 'rb')), res.stdout + res.stderr


@pytest.fixture(scope='module')
def pytorch_predictions(demo_checkpoint, tmp_path_factory):
    root, ckpt = demo_checkpoint
    return predict(root, ckpt, tmp_path_factory.mktemp('pytorch'))[0]


def same_predictions(want, got, atol):
    assert len(want) == len(got) == 3
    for w, g in zip(want, got):
        w, g = w['pred_instances'], g['pred_instances']
        assert len(w['scores']) == len(g['scores'])
        assert torch.allclose(w['scores'].sort().values, g['scores'].sort().values, atol=atol)


@pytest.mark.slow
def test_test_py_backend_gives_pytorch_predictions(demo_checkpoint, pytorch_predictions,
                                                    tmp_path):
    """tools/test.py --backend openvino: the backbone + neck run by OpenVINO (f32), the heads
    in PyTorch; the predictions are PyTorch's (ONNX Runtime's features: the test above)."""
    root, ckpt = demo_checkpoint
    preds, log = predict(root, ckpt, tmp_path, '--backend', 'openvino')
    assert 'backbone + neck run by openvino' in log
    same_predictions(pytorch_predictions, preds, 1e-3)


def test_test_py_backend_argument_errors(demo_checkpoint, tmp_path):
    from mmhiri.apis import check_backend_args
    for args, msg in [
        (('onnxruntime', 'bf16', False, True), 'runs fp32 on CPU'),
        (('pytorch', 'bf16', False, True), 'for PyTorch mixed precision pass --amp'),
        (('openvino', 'fp32', True, True), 'pass one of them'),
        (('openvino', 'fp32', False, False), 'training runs in PyTorch'),
        (('tensorrt', 'fp32', False, True), 'engine must be one of'),
    ]:
        with pytest.raises(SystemExit, match=msg):
            check_backend_args(*args)
    root, ckpt = demo_checkpoint  # the command line stops before building anything
    res = run_test_py(root, ckpt, tmp_path / 'w', '--backend', 'openvino', '--deploy',
                      check=False)
    assert res.returncode != 0 and 'pass one of them' in res.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_folded_checkpoint_round_trips_through_the_tools(demo_checkpoint, pytorch_predictions,
                                                          tmp_path):
    """reparameterize_model.py folds a checkpoint; tools/test.py with
    model.backbone.deploy=True loads it strictly and gives the unfolded model's predictions."""
    root, ckpt = demo_checkpoint
    folded = tmp_path / 'folded.pth'
    out = run_script('tools/model_converters/reparameterize_model.py',
                     'configs/demo/mask_rcnn_hiri_demo.py', str(ckpt), str(folded))
    assert 'model.backbone.deploy=True' in out.stdout
    state = torch.load(folded, weights_only=False)['state_dict']
    assert not any(k.startswith('backbone.') and 'running_mean' in k and 'out_norm' not in k
                   for k in state)
    preds, _ = predict(root, folded, tmp_path / 'folded',
                       cfg=('model.backbone.deploy=True', ))
    same_predictions(pytorch_predictions, preds, 1e-4)
    again = run_script('tools/model_converters/reparameterize_model.py',
                       'configs/demo/mask_rcnn_hiri_demo.py', str(folded), str(tmp_path / 'x'),
                       check=False)
    assert again.returncode != 0 and 'does not fit' in again.stderr.strip().splitlines()[-1]
