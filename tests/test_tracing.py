"""Tools that trace a model get one that holds at every input size: ``torch.jit.trace``, the
legacy ONNX exporter (opset 11 on) and ``openvino.convert_model`` of the module."""
import pytest
import torch

from conftest import tiny_backbone
from test_speed_paths import NAMES, built, max_rel

TRACE_AT = (64, 64)
OTHER_SIZES = [(67, 93), (33, 47), (96, 64), (64, 64)]


def model_of(name):
    return built(name, out_indices=None if name != 'ViTAE' else (-1, ))


@pytest.mark.parametrize('name', NAMES)
def test_jit_trace_holds_at_other_sizes(name):
    model = model_of(name)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(1, 3, *TRACE_AT), check_trace=False)
        for hw in OTHER_SIZES:
            x = torch.randn(2, 3, *hw)
            assert max_rel(model(x), traced(x)) < 1e-5, hw


def test_vit_style_vitae_traces_with_its_position_table():
    """ViTAE-B/L/H resize their position table to the patch grid; traced at the grid it was
    built for, the trace must still resize at other sizes."""
    from mmhiri.models import ViTAE
    torch.manual_seed(0)
    model = ViTAE(dict(patch_size=16, dim=32, depth=1, num_heads=2, nc_groups=8,
                       mlp_ratio=2.), img_size=64, out_type='featmap').eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(1, 3, 64, 64), check_trace=False)
        for hw in [(96, 80), (64, 64), (50, 70)]:
            x = torch.randn(1, 3, *hw)
            assert max_rel(model(x), traced(x)) < 1e-5, hw


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('opset', [11, 14, 17])
def test_legacy_onnx_exporter(name, opset, tmp_path):
    import onnxruntime as ort
    model = model_of(name)
    path = str(tmp_path / f'{name}.onnx')
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *TRACE_AT))
        torch.onnx.export(model, (torch.rand(1, 3, *TRACE_AT), ), path, dynamo=False,
                          opset_version=opset, input_names=['x'],
                          output_names=[f'out{i}' for i in range(len(outs))],
                          dynamic_axes={'x': {0: 'n', 2: 'h', 3: 'w'}})
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for hw in OTHER_SIZES[:3]:
        x = torch.randn(1, 3, *hw)
        got = sess.run(None, {'x': x.numpy()})
        with torch.no_grad():
            want = model(x)
        assert max_rel(want, [torch.from_numpy(g) for g in got]) < 1e-4, hw


@pytest.mark.parametrize('name', NAMES)
def test_openvino_convert_model_of_the_module(name):
    ov = pytest.importorskip('openvino')
    model = model_of(name)
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=torch.rand(1, 3, *TRACE_AT),
                                     input=[ov.PartialShape([1, 3, -1, -1])])
    compiled = ov.Core().compile_model(converted, 'CPU',
                                       {'INFERENCE_PRECISION_HINT': 'f32'})
    for hw in OTHER_SIZES[:3]:
        x = torch.randn(1, 3, *hw)
        result = compiled({0: x.numpy()})
        got = [torch.from_numpy(result[o]) for o in compiled.outputs]
        with torch.no_grad():
            assert max_rel(model(x), got) < 1e-4, hw


def test_fused_attention_is_kept_outside_traces():
    """The explicit product is only for traced graphs: eager and compiled calls keep the
    fused kernel (no attention matrix kept for backward; see test_speed_paths)."""
    import torch.nn.functional as F
    model = tiny_backbone('HIRIViT').eval()
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(torch.jit.is_tracing())
        return real(*args, **kwargs)

    F.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64))
            eager = len(calls)
            torch.jit.trace(model, torch.rand(1, 3, 64, 64), check_trace=False)
    finally:
        F.scaled_dot_product_attention = real
    assert eager > 0 and len(calls) == eager  # none while tracing
