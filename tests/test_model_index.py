"""model-index.yml and configs/metafiles/*.yml: complete, well-formed and up to date.

The structure checks read the YAML only; the last test runs ``tools/analysis/model_index.py
--check`` (configs loaded, paper_table.md read, only the demo models counted: ~10-15 s).
"""
import glob
import os.path as osp
import sys

import pytest
import yaml

from conftest import ROOT, run_script as run

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))


def read(rel):
    with open(osp.join(ROOT, rel), encoding='utf-8') as f:
        return yaml.safe_load(f)


@pytest.fixture(scope='module')
def index():
    """(Import list, {metafile: data}) of the checked-in model index."""
    imports = read('model-index.yml')['Import']
    return imports, {rel: read(rel) for rel in imports if osp.isfile(osp.join(ROOT, rel))}


def all_models(metafiles):
    return [(rel, m) for rel, data in metafiles.items() for m in data.get('Models') or []]


def configs_on_disk():
    paths = glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    return sorted(osp.relpath(p, ROOT) for p in paths
                  if not osp.relpath(p, ROOT).startswith(osp.join('configs', '_base_', '')))


def test_index_imports_every_metafile(index):
    imports, metafiles = index
    assert len(imports) == len(set(imports)), imports
    assert [rel for rel in imports if rel not in metafiles] == [], 'imported but missing'
    on_disk = sorted(osp.relpath(p, ROOT)
                     for p in glob.glob(osp.join(ROOT, 'configs', 'metafiles', '*.y*ml')))
    assert [rel for rel in on_disk if rel not in imports] == [], 'metafiles model-index.yml misses'
    assert {'configs/metafiles/hiri_vit.yml', 'configs/metafiles/vitae.yml',
            'configs/metafiles/vitaev2.yml', 'configs/metafiles/demo.yml'} <= set(imports)


def test_every_config_has_exactly_one_entry(index):
    _, metafiles = index
    configs = configs_on_disk()
    assert len(configs) > 30 and 'configs/demo/mask_rcnn_hiri_demo.py' in configs
    entries = [m.get('Config') for _, m in all_models(metafiles)]
    assert [c for c in configs if c not in entries] == [], 'configs without an entry'
    assert sorted({c for c in entries if entries.count(c) > 1}) == [], 'configs with two entries'
    assert [c for c in entries if c not in configs] == [], 'entries pointing to no config'
    names = [m.get('Name') for _, m in all_models(metafiles)]
    assert len(names) == len(set(names)), 'model names must be unique'


def test_required_fields(index):
    _, metafiles = index
    collections = {}
    for rel, data in metafiles.items():
        assert data.get('Collections'), f'{rel}: no Collections'
        for col in data['Collections']:
            where = f'{rel}: {col.get("Name")}'
            assert col.get('Name'), where
            for key in ('Training Data', 'Training Techniques', 'Architecture'):
                assert col.get('Metadata', {}).get(key), f'{where}: Metadata.{key}'
            paper = col.get('Paper') or {}
            assert paper.get('Title') and paper.get('URL', '').startswith('https://'), where
            # repository-relative, as in mmdet / mmpretrain
            assert col.get('README') and osp.isfile(osp.join(ROOT, col['README'])), where
            collections[col['Name']] = rel
    assert len(collections) == len(metafiles)
    for rel, m in all_models(metafiles):
        where = f'{rel}: {m.get("Name")}'
        assert m.get('Name') and m.get('Config'), where
        assert collections.get(m.get('In Collection')) == rel, f'{where}: In Collection'
        meta = m.get('Metadata') or {}
        assert meta.get('Training Data'), f'{where}: Training Data'
        assert ('Epochs' in meta) != ('Iterations' in meta), f'{where}: Epochs or Iterations'
        for key in ('Epochs' if 'Epochs' in meta else 'Iterations', 'Batch Size', 'Parameters',
                    'FLOPs'):
            assert isinstance(meta.get(key), int) and meta[key] > 0, f'{where}: {key}'
        assert meta.get('FLOPs Input Size') and meta.get('Sizes Source'), where
        assert 'Weights' not in m, f'{where}: no weights are released'
        demo = m['Config'].startswith('configs/demo/')
        assert demo == (rel == 'configs/metafiles/demo.yml'), where
        if demo:
            assert 'Results' not in m and 'synthetic' in meta['Training Data'], where
            continue
        for result in m.get('Results') or []:
            assert result.get('Task') and result.get('Dataset') and result.get('Metrics'), where
            # every number there is the paper's, and says so
            assert all('(paper' in k for k in result['Metrics']), f'{where}: {result["Metrics"]}'
        if m.get('Results'):
            assert 'as reported by the paper' in meta.get('Results Source', ''), where


def test_paper_results_name_existing_configs():
    from paper_figures import RESULTS
    configs = set(configs_on_disk())
    assert [k for k in RESULTS if f'configs/{k}.py' not in configs] == []


def test_openmmlab_loader_accepts_it():
    """model-index's own loader (what mim and mmengine read) finds every model and nothing
    wrong but the repository-relative README paths, the OpenMMLab convention it resolves
    against the metafile's folder."""
    from modelindex.load_model_index import load
    mi = load(osp.join(ROOT, 'model-index.yml'))
    assert len(mi.models) == len(configs_on_disk()) and len(mi.collections) == 4
    errors = [e for item in mi.collect_check_errors() for e in item['errors']]
    assert [e for e in errors if not e.startswith('Path to README file README.md')] == []


def test_check_names_differences(tmp_path):
    """The checker names the field that differs, model by model."""
    import model_index
    rel = 'configs/metafiles/vitae.yml'
    want = read(rel)
    assert model_index.differences(rel, want) == []
    want['Models'][0]['Metadata']['Parameters'] += 10000
    del want['Models'][1]
    out = model_index.differences(rel, want)
    name0, name1 = read(rel)['Models'][0]['Name'], read(rel)['Models'][1]['Name']
    assert any(f'{name0}: Metadata.Parameters' in line for line in out), out
    assert any(f'{name1}: not generated' in line for line in out), out
    assert model_index.differences('configs/metafiles/nothing.yml', want) == [
        'configs/metafiles/nothing.yml: missing']


def test_paper_table_parsing(tmp_path):
    import model_index
    md = tmp_path / 't.md'
    md.write_text(
        '<!-- paper_table:backbones -->\n| model | params | bb | res | GFLOPs | x |\n|---|\n'
        '| HIRIViT-S | 34.72 / 34.8 (-0.2%) | 30.85 / 30.9 | 224 | 1.27 / 4.5 (-71.8%) | 1 |\n'
        '| HIRIViT-S |  |  | 448 | 5.00 / 5.0 (-0.1%) | 4.77 |\n'
        '<!-- /paper_table:backbones -->\n<!-- paper_table:configs -->\n'
        '| config | framework | input H×W | params (M) ours | paper | diff | GFLOPs ours | p |\n'
        '|---|\n| `a_1x` | mmdet | 1200×1600 (padded to 1216×1600) | 41.10 | 41.1 | -0.0% | '
        '139.91 | 139 |\n| `b_1x` | - | - | - | 41.1 | - | - | 139 |\n'
        '<!-- /paper_table:configs -->\n')
    backbones, configs = model_index.read_paper_table(str(md))
    assert backbones[('HIRIVIT-S', 448)] == dict(params=34.72, gflops=5.0, input='448x448')
    assert configs == {'a_1x': dict(params=41.10, gflops=139.91,
                                    input='1200x1600 (padded to 1216x1600)')}
    assert model_index.paper_metric('box AP') == 'box AP (paper)'
    assert model_index.paper_metric('mIoU (multi-scale)') == 'mIoU (paper, multi-scale)'


def test_metafiles_up_to_date():
    out = run('tools/analysis/model_index.py', '--check', check=False)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert 'model index up to date' in out.stdout
