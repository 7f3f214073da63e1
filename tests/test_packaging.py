"""mmhiri as a package: the wheel's mmhiri/.mim/, `pip install` of it beside an existing stack,
the editable install, and openmim's `mim search/train/test mmhiri` on both (offline).

The builds and installs run offline (--no-index --no-build-isolation) from a copy of the sources.
The last test runs mmdet's own tools/analysis_tools/get_flops.py on one of our configs.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from conftest import ROOT

MIM = osp.join(osp.dirname(sys.executable), 'mim')
SOURCES = ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE', 'CITATION.cff', 'model-index.yml',
           'requirements', 'mmhiri', 'configs', 'tools')


def sh(*cmd, cwd, env=None, check=True):
    env = dict(os.environ, OMP_NUM_THREADS='1', PIP_DISABLE_PIP_VERSION_CHECK='1', **(env or {}))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if check:
        assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
    return out


def repo_files(top, root=ROOT):
    """Files under root/top that the package ships (no byte-code), relative to root/top."""
    found = []
    for d, dirs, files in os.walk(osp.join(root, top)):
        dirs[:] = [x for x in dirs if x != '__pycache__']
        found += [osp.relpath(osp.join(d, f), osp.join(root, top)) for f in files
                  if not f.endswith('.pyc')]
    return sorted(found)


def model_names():
    names = []
    for path in glob.glob(osp.join(ROOT, 'configs', 'metafiles', '*.yml')):
        with open(path) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    return sorted(names)


def mim_search(cwd, env=None):
    """The config ids `mim search mmhiri` lists (its --json dump)."""
    out = osp.join(cwd, 'search.json')
    sh(MIM, 'search', 'mmhiri', '--json', out, cwd=cwd, env=env)
    with open(out) as f:
        return sorted(json.load(f)['config'])


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """A copy of what the package is built from (a build writes build/ and mmhiri.egg-info/
    next to setup.py)."""
    src = tmp_path_factory.mktemp('src')
    for item in SOURCES:
        path = osp.join(ROOT, item)
        if osp.isdir(path):
            shutil.copytree(path, src / item, symlinks=True,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(path, src / item, follow_symlinks=False)
    return src


@pytest.fixture(scope='module')
def wheel(sources, tmp_path_factory):
    dist = tmp_path_factory.mktemp('dist')
    sh(sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
       '--no-index', '-w', str(dist), str(sources), cwd=dist)
    (whl,) = glob.glob(str(dist / 'mmhiri-*.whl'))
    return whl


@pytest.fixture(scope='module')
def target(sources, tmp_path_factory):
    """`pip install .` beside the environment's stack: into a folder of its own (--target), no
    index, no dependencies, no build isolation (the offline route of docs/install.md)."""
    site = tmp_path_factory.mktemp('target') / 'site'
    sh(sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
       '--no-build-isolation', '--target', str(site), '.', cwd=sources)
    return site


def test_wheel_carries_the_mim_folder_as_files(wheel, sources):
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        mim = sorted(n[len('mmhiri/.mim/'):] for n in infos if n.startswith('mmhiri/.mim/'))
        expected = sorted(['model-index.yml'] + [f'{top}/{p}' for top in ('configs', 'tools')
                                                 for p in repo_files(top, sources)])
        assert mim == expected
        assert {'configs/demo/mask_rcnn_hiri_demo.py', 'configs/metafiles/demo.yml',
                'tools/train.py', 'tools/test.py'} <= set(mim)
        for rel in mim:  # real copies (no links), identical to the repository's files
            info = infos[f'mmhiri/.mim/{rel}']
            assert (info.external_attr >> 16) & 0o170000 != 0o120000, rel
            with open(sources / rel, 'rb') as f:  # the files the wheel was built from
                assert z.read(info) == f.read(), rel
        assert not [n for n in infos if '__pycache__' in n or n.endswith('.pyc')]
        assert 'mmhiri/apis.py' in infos and not [n for n in infos if n.startswith('tests/')]


def test_sdist_builds_the_same_wheel(wheel, sources, tmp_path):
    """MANIFEST.in: the sdist holds what mmhiri/.mim/ links to, so a wheel built from it (what
    `pip install mmhiri-X.tar.gz` does) carries the same files."""
    import tarfile
    sh(sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path), cwd=sources)
    (sdist,) = glob.glob(str(tmp_path / 'mmhiri-*.tar.gz'))
    with tarfile.open(sdist) as t:
        names = {m.name.partition('/')[2] for m in t.getmembers() if m.isfile()}
    assert {'model-index.yml', 'configs/demo/mask_rcnn_hiri_demo.py', 'tools/train.py',
            'mmhiri/.mim/configs/demo/mask_rcnn_hiri_demo.py'} <= names
    sh(sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
       '--no-index', '-w', str(tmp_path / 'dist'), sdist, cwd=tmp_path)
    (again,) = glob.glob(str(tmp_path / 'dist' / 'mmhiri-*.whl'))
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(again) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert all(a.read(n) == b.read(n) for n in a.namelist() if '.dist-info/' not in n)


def test_pip_install_target_imports_and_mim_finds_it(target, tmp_path):
    env = dict(PYTHONPATH=str(target))
    out = sh(sys.executable, '-c', 'import mmhiri; print(mmhiri.__file__)',
             cwd=tmp_path, env=env)
    assert out.stdout.strip() == str(target / 'mmhiri' / '__init__.py')
    assert mim_search(str(tmp_path), env) == model_names()


def test_editable_install_exposes_mim_folder(tmp_path):
    """The venv's `pip install -e .`: the package is imported from the repository, and mim
    finds a .mim/ next to the package's metadata that leads back into the repository."""
    out = sh(sys.executable, '-c', "import importlib.util, pkg_resources; "
             "print(importlib.util.find_spec('mmhiri').origin); "
             "print(pkg_resources.get_distribution('mmhiri').location)", cwd=tmp_path)
    imported, location = out.stdout.split()
    assert imported == osp.join(ROOT, 'mmhiri', '__init__.py')
    mim = osp.join(location, 'mmhiri', '.mim')
    assert osp.isfile(osp.join(mim, 'model-index.yml')), (
        f'{mim} missing: reinstall with `pip install --no-deps --no-build-isolation -e .`')
    assert mim_search(str(tmp_path)) == model_names()


def test_config_names_are_unique_in_the_package():
    """`mim train/test mmhiri NAME.py` looks NAME.py up in the whole installed package."""
    names = [osp.basename(p) for p in repo_files('configs') if p.endswith('.py')]
    others = {osp.basename(p) for top in ('mmhiri', 'tools') for p in repo_files(top)}
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert sorted(set(names) & others) == []


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """A folder holding data/synthetic/instances/ (8 + 2 scenes): the demo config reads it
    relative to the working directory, so commands run from here find it unchanged."""
    from mmhiri.datasets.synthetic import main as make_data
    root = tmp_path_factory.mktemp('demo')
    make_data([str(root / 'data' / 'synthetic'), '--num-train', '8', '--num-val', '2',
               '--only', 'instances'])
    return root


@pytest.mark.slow
def test_mim_train_then_test_by_config_name(demo_data, target, tmp_path):
    """`mim train` through the editable install, then `mim test` of its checkpoint through the
    `pip install .` copy; both find the config by its name, from a folder outside the
    repository."""
    import sysconfig
    demo = 'mmhiri/.mim/configs/demo/mask_rcnn_hiri_demo.py'
    no_workers = ['num_workers=0', 'persistent_workers=False']
    out = sh(MIM, 'train', 'mmhiri', 'mask_rcnn_hiri_demo.py', '--work-dir',
             str(tmp_path / 'work'), '--no-validate', '--cfg-options', 'train_cfg.max_epochs=1',
             *(f'train_dataloader.{o}' for o in no_workers), cwd=demo_data)
    log = out.stdout + out.stderr
    assert f"will use {sysconfig.get_paths()['purelib']}/{demo} instead" in log, log[-3000:]
    assert 'Training finished successfully' in log
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    assert ckpt.is_file()
    out = sh(MIM, 'test', 'mmhiri', 'mask_rcnn_hiri_demo.py', '--checkpoint', str(ckpt),
             '--work-dir', str(tmp_path / 'test'), '--metrics-out', str(tmp_path / 'metrics.json'),
             '--cfg-options', *(f'test_dataloader.{o}' for o in no_workers), cwd=demo_data,
             env=dict(PYTHONPATH=str(target)))
    log = out.stdout + out.stderr
    assert f'will use {target}/{demo} instead' in log, log[-3000:]
    assert 'Testing finished successfully' in log
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert 0 <= metrics['coco/bbox_mAP'] <= 1 and 0 <= metrics['coco/segm_mAP'] <= 1, metrics


@pytest.mark.slow
def test_mmdet_get_flops_on_our_config(demo_data):
    """mmdet's own tools/analysis_tools/get_flops.py (shipped in mmdet/.mim/, run as `mim run
    mmdet get_flops`) on the demo config: it counts the val images the config loads. Only the
    parameters are compared with ours (the model index, from tools/analysis/get_flops.py): the
    FLOPs differ by design (ours runs the RoI heads on the full proposal budget)."""
    config = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_hiri_demo.py')
    out = sh(MIM, 'run', 'mmdet', 'get_flops', config, '--num-images', '1', cwd=demo_data)
    m = re.search(r'Input shape: \((\d+), (\d+)\)\nFlops: ([\d.]+)G\nParams: ([\d.]+)M\n',
                  out.stdout)
    assert m, out.stdout[-2000:]
    assert (int(m[1]), int(m[2])) == (256, 256)  # 128x128 scenes at the config's 2x scale
    assert float(m[3]) > 0
    with open(osp.join(ROOT, 'configs', 'metafiles', 'demo.yml')) as f:
        (entry,) = [e for e in yaml.safe_load(f)['Models'] if e['Name'] == 'mask_rcnn_hiri_demo']
    assert float(m[4]) * 1e6 == pytest.approx(entry['Metadata']['Parameters'], abs=5e3)
