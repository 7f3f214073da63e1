"""ONNX export with dynamic height and width: every input size the PyTorch model accepts runs
in onnxruntime with the same outputs (tiny widths; tools/deployment/pytorch2onnx.py)."""
import os.path as osp
import sys

import pytest
import torch

from conftest import ROOT, TINY_HIRI, TINY_V1, TINY_V2, run_script as run

sys.path.insert(0, osp.join(ROOT, 'tools', 'deployment'))
SIZES = [(64, 64), (67, 93), (33, 47), (96, 128), (129, 65)]  # three with odd sides


@pytest.mark.slow
@pytest.mark.parametrize('name,arch,deploy', [
    ('HIRIViT', TINY_HIRI, False), ('ViTAEv2', TINY_V2, False), ('ViTAE', TINY_V1, False),
    ('HIRIViT', TINY_HIRI, True)])
def test_export_runs_every_size_in_onnxruntime(name, arch, deploy, tmp_path):
    """Exported at 64x64. ViTAEv2 used to fail at 449x611 in onnxruntime: a reduction cell
    decided in Python at export time whether to pad, and Python's rounding of negative sizes
    is not ONNX's. Deployed HIRI-ViT used to fail at odd sizes: the HR block's crop after
    up-sampling was dropped from the channels-last graph. (The folded ViTAEv2 goes through the
    same export at odd sizes in tests/test_engines.py, with its neck.)"""
    import pytorch2onnx
    import mmhiri.models as models
    torch.manual_seed(0)
    module = getattr(models, name)(arch).eval()
    if deploy:
        pytorch2onnx.deploy_for_export(module)
    out = str(tmp_path / 'm.onnx')
    with torch.no_grad():
        pytorch2onnx.export(module, out, (64, 64))
        diffs, rates = pytorch2onnx.check(module, out, SIZES, repeats=1, threads=1)
    for (hw, d, shapes), size in zip(diffs, SIZES):
        assert hw == size and max(d) <= 1e-4, (hw, d)
        strides = module.out_strides
        assert [s[-2:] for s in shapes] == [(-(-size[0] // st), -(-size[1] // st))
                                            for st in strides]
    assert rates['onnxruntime'] > 0 and rates['pytorch'] > 0


@pytest.mark.slow
def test_cli_prints_differences_and_throughputs(tmp_path):
    import json
    # HIRI-ViT: the quickest to export (ViTAEv2 at odd sizes is the test above)
    out = run('tools/deployment/pytorch2onnx.py', '--backbone', 'HIRIViT', '--arch',
              json.dumps(TINY_HIRI), '--out', str(tmp_path / 'h.onnx'), '--shape', '64', '64',
              '--check-shapes', '64', '64', '449', '611', '--repeats', '1', '--threads', '1')
    text = out.stdout
    assert 'exported HIRIViT(custom) to' in text and 'H and W dynamic' in text
    assert '449x611: max |onnxruntime - pytorch| = ' in text
    assert 'throughput at 64x64, batch 1, 1 threads: onnxruntime' in text


def test_cli_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    import json
    ckpt = tmp_path / 'other.pth'
    from conftest import tiny_backbone
    torch.save(tiny_backbone('HIRIViT').state_dict(), ckpt)
    out = run('tools/deployment/pytorch2onnx.py', '--backbone', 'ViTAEv2', '--arch',
              json.dumps(TINY_V2), '--checkpoint', str(ckpt), '--out', str(tmp_path / 'x.onnx'),
              check=False)
    assert out.returncode != 0 and 'checkpoint does not match ViTAEv2: missing' in out.stderr


def test_small_constants_survive_export(tmp_path):
    """An epsilon as small as the Performer attention's (1e-8) stays in the graph: onnxscript's
    optimiser, on by default, removes `x + c` for |c| <= 1e-8 (ViTAE-T was 1e-3 off)."""
    import pytorch2onnx

    class Eps(torch.nn.Module):
        def forward(self, x):
            return x / (x * 1e-7 + 1e-8)

    module = Eps().eval()
    out = str(tmp_path / 'eps.onnx')
    pytorch2onnx.export(module, out, (64, 64))
    x = torch.rand(1, 3, 64, 64) + 0.5
    import onnxruntime as ort
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    want = module(x).numpy()
    assert abs(got - want).max() / abs(want).max() < 1e-5


@pytest.mark.slow
def test_vitae_t_full_width_within_1e_4(tmp_path):
    """ViTAE-T at its real width (Performer reduction cells) in onnxruntime at five sizes, two
    odd: max difference <= 1e-4."""
    import pytorch2onnx
    from mmhiri.models import ViTAE
    torch.manual_seed(0)
    module = ViTAE('t').eval()
    out = str(tmp_path / 't.onnx')
    sizes = [(224, 224), (225, 301), (160, 224), (257, 193), (192, 192)]
    with torch.no_grad():
        pytorch2onnx.export(module, out, (224, 224))
        diffs, _ = pytorch2onnx.check(module, out, sizes, repeats=1, threads=2)
    worst = max(max(d) for _, d, _ in diffs)
    print(f'ViTAE-T: max |onnxruntime - pytorch| over {sizes}: {worst:.2e}')
    assert worst <= 1e-4
