"""tools/gpu_check.py: argument handling, the no-GPU stop, failures that make the exit status
non-zero, the comparisons' verdicts, and (slow) the whole check on CPU with tiny widths."""
import importlib.util
import json
import os
import re

import pytest
import torch

from conftest import ROOT, run_script

SCRIPT = 'tools/gpu_check.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('gpu_check', os.path.join(ROOT, SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_lists_every_option():
    out = run_script(SCRIPT, '--help')
    for option in ('--device', '--tiny', '--amp-dtype', '--iters', '--warmup', '--batch', '--only',
                   '--work-dir', '--json', '--verbose'):
        assert option in out.stdout, option
    assert '--fail-check' not in out.stdout  # for testing the report only
    assert 'ops' in out.stdout and 'families' in out.stdout and 'train' in out.stdout


@pytest.mark.parametrize('args', [
    ['--iters', '0'], ['--iters', 'many'], ['--warmup', '-1'], ['--only', 'everything'],
    ['--device', 'tpu'], ['--amp-dtype', 'fp8'], ['--no-such-option'],
    ['--device', 'cpu', '--amp-dtype', 'fp16']])
def test_argument_errors_are_one_line(args):
    out = run_script(SCRIPT, *args, check=False)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('gpu_check.py: error: '), out.stderr
    assert out.stdout == ''


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has a GPU')
@pytest.mark.parametrize('args', [[], ['--device', 'cuda', '--tiny']])
def test_cuda_without_a_gpu_stops_with_one_line(args):
    out = run_script(SCRIPT, *args, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and 'sees no CUDA GPU' in lines[0], out.stderr
    assert '--device cpu --tiny' in lines[0] and out.stdout == ''


def test_an_injected_failure_makes_the_exit_status_non_zero(tmp_path):
    report = tmp_path / 'report.json'
    out = run_script(SCRIPT, '--device', 'cpu', '--only', 'ops', '--fail-check', 'ops/nms',
                     '--json', str(report), check=False)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert re.search(r'FAIL\s+nms\s+failure injected with --fail-check', out.stdout)
    assert re.search(r'PASS\s+roi_align', out.stdout)
    assert 'FAIL ops/nms: failure injected' in out.stdout
    assert re.search(r'RESULT: FAIL \(2 of 4 checks passed, 1 failed, 1 skipped\)', out.stdout)
    data = json.loads(report.read_text())
    assert data['passed'] is False
    assert {c['check']: c['status'] for c in data['checks']} == {
        'ops/mmcv_build': 'PASS', 'ops/nms': 'FAIL', 'ops/roi_align': 'PASS',
        'ops/sigmoid_focal_loss': 'SKIP'}


def test_a_wrong_op_result_fails_its_check(monkeypatch, capsys):
    """mmcv's RoIAlign returning values 1% off: the check says by how much and main returns 1;
    the other checks still run."""
    import mmcv.ops
    tool = load_tool()
    right = mmcv.ops.roi_align
    monkeypatch.setattr(mmcv.ops, 'roi_align', lambda *a, **k: right(*a, **k) * 1.01)
    assert tool.main(['--device', 'cpu', '--only', 'ops']) == 1
    out = capsys.readouterr().out
    assert re.search(r'FAIL\s+roi_align\s+max relative difference to torchvision\'s roi_align: '
                     r'forward 1\.0e-02', out), out
    assert re.search(r'PASS\s+nms', out) and 'RESULT: FAIL' in out


def test_a_wrong_gradient_fails_its_family(monkeypatch, capsys):
    """A family whose bf16 backward gets one weight's gradient wrong fails (naming the weight);
    another family passes (ViTAEv2, the slowest, is left out here)."""
    tool = load_tool()
    step = tool.family_step

    def broken(model, x, targets, device, dtype):
        outs, grads = step(model, x, targets, device, dtype)
        if dtype == 'bf16' and type(model).__name__ == 'ViTAE':
            name = next(n for n, g in grads.items() if g.dim() >= 2)
            grads[name] = -grads[name]
        return outs, grads

    monkeypatch.setattr(tool, 'family_step', broken)
    monkeypatch.setattr(tool, 'FAMILIES', [f for f in tool.FAMILIES if f[0] != 'ViTAEv2'])
    assert tool.main(['--device', 'cpu', '--tiny', '--only', 'families']) == 1
    out = capsys.readouterr().out
    assert re.search(r'FAIL\s+ViTAE \(tiny\) bf16\s+.*; weight stages\.\S+ gradient cosine '
                     r'-0\.9', out), out
    assert re.search(r'PASS\s+HIRIViT \(tiny\) bf16', out)


def test_family_comparison_verdicts():
    tool = load_tool()
    g = torch.Generator().manual_seed(0)
    ref_outs = [torch.randn(2, 8, 4, 4, generator=g)]
    ref = {f'w{i}': torch.randn(16, 8, generator=g) for i in range(5)}
    ref['bias_before_bn'] = torch.randn(16, generator=g) * 1e-9  # zero in exact arithmetic
    ref['norm.bias'] = torch.randn(16, generator=g)
    noisy = {n: v + 1e-3 * torch.randn(v.shape, generator=g) * v.abs().mean()
             for n, v in ref.items()}
    noisy['bias_before_bn'] = torch.randn(16, generator=g)  # rounding noise: left out
    text, data = tool.compare_family(ref_outs, noisy, ref_outs, ref, 'fp32')
    assert data['zero_grads_left_out'] == 1 and data['grad_cos'] > 0.9999
    assert data['worst_weight'][0].startswith('w') and data['worst_1d'][0] == 'norm.bias'

    wrong = dict(noisy, w3=torch.randn(16, 8, generator=g))  # one weight's gradient unrelated
    with pytest.raises(tool.CheckFailed, match='weight w3 gradient cosine'):
        tool.compare_family(ref_outs, wrong, ref_outs, ref, 'bf16')
    with pytest.raises(tool.CheckFailed, match='non-finite values in 1 tensors'):
        tool.compare_family(ref_outs, dict(noisy, w0=noisy['w0'] * float('inf')), ref_outs, ref,
                            'bf16')
    with pytest.raises(tool.CheckFailed, match='output cosine'):
        tool.compare_family([ref_outs[0] + torch.randn(2, 8, 4, 4, generator=g)], noisy,
                            ref_outs, ref, 'bf16')
    missing = {n: v for n, v in noisy.items() if n != 'w1'}
    with pytest.raises(tool.CheckFailed, match='1 parameters got no gradient'):
        tool.compare_family(ref_outs, missing, ref_outs, ref, 'bf16')


def test_training_verdicts():
    tool = load_tool()
    assert tool.train_problems(3, 3, [2.0, 1.9, 1.8], 3) == []
    assert tool.train_problems(3, 3, [2.0, float('nan'), float('inf')], 3) == [
        'non-finite loss at iteration 1 (2 of 3)']
    assert tool.train_problems(11, 11, [1.0] * 11, 0, loss_scale=2048.) == [
        'no optimizer step was applied in the whole run (every step skipped, loss scale now '
        '2048)']
    assert tool.train_problems(2, 3, [1.0, 1.0], 2) == ['2 of 3 iterations ran']


@pytest.fixture(scope='module')
def cpu_tiny_run(tmp_path_factory):
    """One `--device cpu --tiny` run for the two tests below."""
    import time
    report = tmp_path_factory.mktemp('gpu_check') / 'report.json'
    start = time.perf_counter()
    out = run_script(SCRIPT, '--device', 'cpu', '--tiny', '--json', str(report), check=False)
    print(f'gpu_check.py --device cpu --tiny: {time.perf_counter() - start:.1f} s')
    return out, json.loads(report.read_text())


EXPECTED_CHECKS = (
    ['ops/mmcv_build', 'ops/nms', 'ops/roi_align', 'ops/sigmoid_focal_loss']
    + [f'families/{f} (tiny) bf16' for f in ('HIRIViT', 'ViTAEv2', 'ViTAE')]
    + ['train/mask_rcnn_hiri_s_1x', 'train/mmdet swin-t mask_rcnn_1x',
       'train/upernet_hiri_s_160k_ade20k', 'train/simplebaseline_hiri_s_ap10k',
       'train/hiri_s_224 (classifier)'])


@pytest.mark.slow
def test_cpu_tiny_report_has_every_section(cpu_tiny_run):
    out, data = cpu_tiny_run
    text = out.stdout
    assert out.returncode == (1 if re.search(r'^\s+FAIL ', text, re.M) else 0), out.stderr[-2000:]
    for header in ('[ops]', '[families]', '[train]', ' summary '):
        assert header in text, header
    assert [c['check'] for c in data['checks']] == EXPECTED_CHECKS
    for check in data['checks']:  # every check printed once, with its status and reason
        line = rf'^\s+{check["status"]}\s+{re.escape(check["name"])}\s+{re.escape(check["reason"])}'
        assert len(re.findall(line, text, re.M)) == 1, check
    summary = text[text.index(' summary '):]
    assert re.search(r'^ops\s+3 PASS, 1 SKIP$', summary, re.M)
    assert re.search(r'^families\s+3 PASS$', summary, re.M)
    assert 'input x batch' in summary and 'iter (median)' in summary and 'peak GPU mem' in summary
    for check in data['checks'][7:]:
        row = re.search(rf'^\s+{re.escape(check["name"])}\s.*\s(PASS|FAIL)$', summary, re.M)
        assert row and row.group(1) == check['status'], check['name']
    for check in data['checks']:
        if check['status'] == 'FAIL':
            assert f'FAIL {check["check"]}: {check["reason"]}' in summary
    passed = [c for c in data['checks'] if c['status'] == 'PASS' and c['section'] == 'train']
    for job in passed:  # timed iterations after the warm-up, every step applied, bf16 on CPU
        assert job['iters'] == 2 and job['warmup'] == 1 and job['steps'] == 3
        assert job['iter_ms'] > 0 and job['peak_mib'] is None and job['input_hw'][0] <= 128
        assert job['amp'] == 'CPUAutocastOptimWrapper bfloat16'
    assert re.search(r'^RESULT: (PASS|FAIL) \(\d+ of 12 checks passed', summary, re.M)
    assert data['passed'] is (out.returncode == 0)


@pytest.mark.slow
def test_cpu_tiny_run_passes(cpu_tiny_run):
    """Every check passes on CPU, the bf16 training jobs included (mmcv's CPU nms / RoIAlign
    and mmpose's to_numpy get fp32 inputs under CPU autocast: mmhiri/utils/amp.py)."""
    out, data = cpu_tiny_run
    failed = [c for c in data['checks'] if c['status'] == 'FAIL']
    assert not failed, failed
    assert out.returncode == 0
