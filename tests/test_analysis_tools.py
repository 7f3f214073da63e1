"""tools/analysis/benchmark.py and paper_table.py: run them as a user would, on small inputs."""
import json
import re
import sys

import pytest

from conftest import ROOT, run_script as run


def test_benchmark_cpu(tmp_path):
    out = run('tools/analysis/benchmark.py', 'configs/imagenet/vitae_t_224.py', '--shape', '64',
              '64', '--batch', '1', '--device', 'cpu', '--warmup', '1', '--repeats', '2',
              '--iters', '1', '--threads', '1', '--json', str(tmp_path / 'b.json'))
    text = out.stdout
    assert 'input: 1x3x64x64' in text and "mode='tensor'" in text
    assert re.search(r'\| throughput \(img/s\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|', text), text
    assert re.search(r'\| latency \(ms/batch\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|', text), text
    assert re.search(r'peak memory: \d+ MiB, -?\d+ MiB above the model and input '
                     r'\(resource\.getrusage', text), text
    r = json.loads((tmp_path / 'b.json').read_text())
    assert r['device'] == 'cpu' and r['input'] == [1, 3, 64, 64] and len(r['latency_ms']['runs']) == 2
    lat = r['latency_ms']
    assert 0 < lat['min'] <= lat['median'] <= lat['max']
    # throughput and latency describe the same runs
    assert abs(r['throughput_img_s']['median'] * lat['median'] / 1000 - 1) < 0.5


@pytest.mark.slow
def test_benchmark_backbone_only_padded_batch():
    out = run('tools/analysis/benchmark.py', 'configs/retinanet_hiri_s_1x.py', '--shape', '60', '90',
              '--batch', '2', '--device', 'cpu', '--warmup', '0', '--repeats', '1', '--iters', '1',
              '--backbone-only', '--threads', '1')
    assert 'model: HIRIViT (backbone only), 30.85 M params' in out.stdout
    assert 'input: 2x3x64x96 (from 60x90, padded to /32)' in out.stdout


def test_benchmark_clear_errors():
    if not __import__('torch').cuda.is_available():
        out = run('tools/analysis/benchmark.py', 'configs/imagenet/vitae_t_224.py', '--device',
                  'cuda', check=False)
        assert out.returncode != 0 and 'Traceback' not in out.stderr
        assert '--device cuda: no CUDA GPU is available' in out.stderr
    out = run('tools/analysis/benchmark.py', 'configs/nope.py', '--device', 'cpu', check=False)
    assert out.returncode != 0 and "config file not found: 'configs/nope.py'" in out.stderr


@pytest.mark.slow
def test_paper_table_backbones_and_configs(tmp_path):
    md = tmp_path / 'table.md'
    out = run('tools/analysis/paper_table.py', '--only', 'backbones', 'configs', '--backbones',
              'ViTAE-T', '--configs', 'simplebaseline_vitaev2_s_ap10k.py', 'atss_hiri_s_3x_missing',
              '--out', str(md))
    text = out.stdout
    # backbone row: ours beside Table 1 with the difference
    assert re.search(r'\| ViTAE-T \| 4\.88 / 4\.8 \(\+1\.7%\) \|', text), text
    # config row: ours, the paper's, the difference, the source
    row = next(line for line in text.splitlines() if '`simplebaseline_vitaev2_s_ap10k`' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1:7] == ['mmpose', '256×256', '23.04', '23.1', '-0.2%', '9.26'], cells
    assert 'ViTAEv2 Table 13' in cells[10]
    assert re.search(r'`atss_hiri_s_3x_missing` .*\| config not found \|', text)
    written = md.read_text()
    assert '<!-- paper_table:backbones -->' in written and '<!-- paper_table:configs -->' in written
    # a partial run replaces only its own section
    run('tools/analysis/paper_table.py', '--only', 'configs', '--configs', 'nothing_here',
        '--out', str(md))
    written = md.read_text()
    assert '| ViTAE-T |' in written and 'simplebaseline_vitaev2_s_ap10k' not in written
    assert '`nothing_here`' in written


def paper_table_module():
    sys.path.insert(0, f'{ROOT}/tools/analysis')
    import paper_table
    return paper_table


def test_paper_table_missing_config_rows(tmp_path):
    paper_table = paper_table_module()
    (tmp_path / 'x_demo.py').write_text('')
    rows = paper_table.config_rows(['retinanet_hiri_s_1x', 'x_demo'], config_dir=str(tmp_path))
    assert [r['name'] for r in rows] == ['retinanet_hiri_s_1x', 'x_demo']
    assert rows[0]['notes'] == ['config not found'] and rows[0]['paper_params'] == 41.1
    assert rows[1]['notes'][0].startswith('demo config')
    table = paper_table.config_table(rows)
    assert '| `retinanet_hiri_s_1x` | - | - | - | 41.1 | - | - | 139 | - | - |' in table


def test_plot_file_and_sections(tmp_path):
    paper_table = paper_table_module()
    png = tmp_path / 'p.png'
    paper_table.save_plot({'A': {64: 1., 96: 2.5}, 'B': {64: 2., 96: 3.}}, str(png))
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    md = tmp_path / 't.md'
    paper_table.write_sections(str(md), {'configs': 'C1', 'plot': 'P1'})
    paper_table.write_sections(str(md), {'plot': 'P2'})
    text = md.read_text()
    assert 'C1' in text and 'P2' in text and 'P1' not in text


@pytest.mark.slow
def test_paper_table_plot(tmp_path):
    png, md = tmp_path / 'plot.png', tmp_path / 'plot.md'
    out = run('tools/analysis/paper_table.py', '--only', 'plot', '--resolutions', '64',
              '--plot-out', str(png), '--out', str(md))
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    head = '| resolution | HIRI-ViT-S GFLOPs | ViTAEv2-S GFLOPs | Swin-T GFLOPs | PVTv2-B2 GFLOPs |'
    assert head in out.stdout
    rows = [line for line in out.stdout.splitlines() if re.match(r'\| 64 \|', line)]
    assert len(rows) == 1 and rows[0].count('(×1.00)') == 4, out.stdout
    assert '![backbone GFLOPs vs resolution](plot.png)' in md.read_text()


@pytest.mark.slow
def test_paper_table_mask_rcnn_matches_table4():
    out = run('tools/analysis/paper_table.py', '--only', 'configs', '--configs',
              'mask_rcnn_hiri_s_1x.py')
    assert re.search(r'\| `mask_rcnn_hiri_s_1x` \| mmdet \| 1200×1600 \(padded to 1216×1600\) \| '
                     r'51\.01 \| 51\.0 \| \+0\.0% \| 184\.01 \| 183 \| \+0\.6% \|', out.stdout)


@pytest.mark.slow
def test_two_stage_flops_do_not_depend_on_random_weights():
    """The RoI heads are counted on the RPN's full proposal budget, not on however many
    proposals a randomly initialised RPN happens to keep after NMS."""
    import torch
    sys.path.insert(0, f'{ROOT}/tools/analysis')
    from get_flops import measure
    flops = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        flops.append(measure(f'{ROOT}/configs/mask_rcnn_hiri_s_1x.py', shape=(400, 600))['flops'])
    assert flops[0] == flops[1]


def test_side_by_side_benchmark_smoke(tmp_path):
    out = run('tools/analysis/benchmark.py', '--side-by-side', '--only', 'HIRI-ViT-S', 'Swin-T',
              '--sizes', '64', '--rounds', '1', '--threads', '1', '--engines', 'explicit',
              'eager', 'runtime', 'openvino-bf16', '--json', str(tmp_path / 's.json'),
              '--out', str(tmp_path / 's.md'))
    text = out.stdout
    assert 'malloc: MALLOC_MMAP_MAX_=0' in text  # re-executed with the tuned allocator
    assert re.search(r'Measured ceiling \(G multiply-adds/s\): fp32 \d+ \(conv \d+, matmul '
                     r'\d+\), bf16 \d+', text), text
    for engine in ('explicit', 'eager', 'runtime', 'openvino-bf16'):
        assert re.search(rf'\| HIRI-ViT-S \| {engine} \| [\d.]+ \([\d.]+–[\d.]+\) '
                         r'\[[\d.]+\] \|', text), engine
    assert re.search(r'\| Swin-T \| eager \| [\d.]+', text)
    assert '| Swin-T | runtime |' not in text  # ours only
    assert 'What `mmhiri.runtime.optimize` chose here' in text
    result = json.loads((tmp_path / 's.json').read_text())
    assert set(result['throughput']) == {
        'HIRI-ViT-S|explicit|64', 'HIRI-ViT-S|eager|64', 'HIRI-ViT-S|runtime|64',
        'HIRI-ViT-S|openvino-bf16|64', 'Swin-T|eager|64', 'Swin-T|openvino-bf16|64'}
    assert result['dtypes']['HIRI-ViT-S|openvino-bf16|64'] == 'bf16'
    assert (tmp_path / 's.md').read_text().startswith('# Side-by-side benchmark')


def test_benchmark_file_keeps_one_section_per_machine(tmp_path):
    sys.path.insert(0, f'{ROOT}/tools/analysis')
    from side_by_side import write_section
    path = str(tmp_path / 'b.md')
    a = dict(device='cpu', machine='CPU A', cpu_family='family 1 model 2', threads=2)
    b = dict(device='cpu', machine='CPU B', cpu_family='family 3 model 4', threads=2)
    write_section(path, a, '## CPU A, family 1 model 2, 2 threads\n\nfirst A')
    write_section(path, b, '## CPU B, family 3 model 4, 2 threads\n\nB')
    write_section(path, a, '## CPU A, family 1 model 2, 2 threads\n\nsecond A')
    text = open(path).read()
    assert text.startswith('# Side-by-side benchmark')
    assert text.count('## CPU A') == 1 and 'second A' in text and 'first A' not in text
    assert '## CPU B' in text and '\nB\n' in text


def test_side_by_side_bound_rows_and_rendering_a_saved_run(tmp_path):
    """The HIRI-ViT-S ÷ Swin-T ratio splits into multiply-adds x efficiency, and a saved run
    renders again (nothing measured) into its machine's section."""
    sys.path.insert(0, f'{ROOT}/tools/analysis')
    import side_by_side
    thr = {'HIRI-ViT-S|openvino-bf16|448': 20.0, 'Swin-T|openvino-bf16|224': 25.0,
           'HIRI-ViT-S|eager|448': 7.0, 'Swin-T|eager|224': 7.5}
    result = dict(
        device='cpu', machine='CPU A', cpu_family='family 1 model 2', cpu_bf16=['avx512_bf16'],
        threads=2, amp=None, malloc={}, versions={'torch': 'x'}, rounds=1, argv=['--rounds', '1'],
        ceiling=dict(fp32=100., fp32_conv=100., fp32_matmul=80., bf16=200., bf16_conv=200.,
                     bf16_matmul=190.),
        gmacs={'HIRI-ViT-S': {'448': 5.0}, 'Swin-T': {'224': 4.5}},
        dtypes={'HIRI-ViT-S|openvino-bf16|448': 'bf16', 'Swin-T|openvino-bf16|224': 'bf16'},
        throughput={k: dict(median=v, min=v, max=v) for k, v in thr.items()})
    result['throughput']['HIRI-ViT-S|eager|448'].update(min=6.0, max=8.0)  # a noisy case
    rows = {r[0]: r for r in side_by_side.bound_rows(result)}
    e, hi, lo, measured, macs, eff, need = rows['openvino-bf16']
    assert (hi, lo) == (448, 224) and measured == pytest.approx(0.8)
    assert macs == pytest.approx(0.9)  # 4.5 / 5.0
    # fractions: HIRI 20 * 5 / 200 = 0.5, Swin 25 * 4.5 / 200 = 0.5625
    assert eff == pytest.approx(0.5 / 0.5625) and measured == pytest.approx(macs * eff)
    assert need == pytest.approx(0.5625 * side_by_side.TARGET_RATIO / 0.9)
    assert rows['eager'][6] == pytest.approx(7.5 * 4.5 / 100 * 1.25 / 0.9)  # fp32 ceiling

    saved = tmp_path / 'r.json'
    saved.write_text(json.dumps(result))
    out = run('tools/analysis/benchmark.py', '--side-by-side', '--report-from', str(saved),
              '--out', str(tmp_path / 'b.md'))
    text = (tmp_path / 'b.md').read_text()
    assert text.count('## CPU A, family 1 model 2, 2 threads') == 1
    assert f'--report-from {saved}' in text and 'the figures are that run' in text
    assert '| openvino-bf16 | 448² ÷ 224² | 0.80 | 0.90 | 0.89 | 0.78 |' in text, text
    # medians, then best rounds (8 / 7.5)
    assert '| HIRI-ViT-S eager at 448 ÷ Swin-T eager at 224 | 0.93 | 1.07 |' in text, text
    assert '| HIRI-ViT-S | openvino-bf16 | – | 20.00 (20.00–20.00) [0.50] |' in out.stdout
    missing = run('tools/analysis/benchmark.py', '--side-by-side', '--report-from',
                  str(tmp_path / 'none.json'), check=False)
    assert missing.returncode == 2 and "--report-from: no file" in missing.stderr
