"""The set-up environment survives a user's `pip install X` (no network: local fake wheels and
pip's dry run with its resolver report), and the set-up's mmcv variants (CPU ops, CUDA ops for
detected or listed architectures) print what they would build through its dry run."""
import json
import os
import platform
import re
import stat
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

VENV = os.path.join(ROOT, '.venv')
SETUP = os.path.join(ROOT, 'tools', 'setup_env.sh')
IN_VENV = os.path.realpath(sys.prefix) == os.path.realpath(VENV)
needs_venv = pytest.mark.skipif(
    not IN_VENV, reason='checks the environment that `make setup` builds (run through `make test`)')


def fake_wheel(folder, name, version, requires=()):
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD)."""
    dist = f'{name}-{version}.dist-info'
    files = {
        f'{name}/__init__.py': '',
        f'{dist}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'
        + ''.join(f'Requires-Dist: {r}\n' for r in requires),
        f'{dist}/WHEEL': 'Wheel-Version: 1.0\nGenerator: mmhiri-tests\nRoot-Is-Purelib: true\n'
        'Tag: py3-none-any\n',
    }
    files[f'{dist}/RECORD'] = ''.join(f'{p},,\n' for p in files) + f'{dist}/RECORD,,\n'
    path = os.path.join(folder, f'{name}-{version}-py3-none-any.whl')
    with zipfile.ZipFile(path, 'w') as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


def dry_run(tmp_path, *reqs):
    report = tmp_path / 'report.json'
    out = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index', '--find-links',
         str(tmp_path), '--report', str(report), '--disable-pip-version-check', *reqs],
        capture_output=True, text=True, cwd=ROOT)
    installs = []
    if out.returncode == 0:
        installs = [i['metadata']['name'].lower() for i in json.loads(report.read_text())['install']]
    return out, installs


@needs_venv
def test_venv_pip_config_names_the_constraints():
    with open(os.path.join(VENV, 'pip.conf')) as f:
        conf = f.read()
    assert os.path.join(ROOT, 'requirements', 'constraints.txt') in conf
    out = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], capture_output=True,
                         text=True)
    assert 'constraints.txt' in out.stdout


@needs_venv
def test_installing_a_torch_dependent_package_moves_nothing(tmp_path):
    """What `pip install timm` did before: torch's declared setuptools>=77 made pip replace the
    setuptools that mmengine's pkg:: lookup needs. A newer setuptools is on offer here."""
    fake_wheel(tmp_path, 'setuptools', '84.0.0')
    fake_wheel(tmp_path, 'torchplugin', '1.0', ['torch', 'setuptools>=77', 'numpy'])
    out, installs = dry_run(tmp_path, 'torchplugin')
    assert out.returncode == 0, out.stderr
    assert installs == ['torchplugin']


@needs_venv
def test_a_package_that_needs_another_stack_is_refused(tmp_path):
    fake_wheel(tmp_path, 'setuptools', '84.0.0')
    fake_wheel(tmp_path, 'newsetuptools', '1.0', ['setuptools>=82'])
    out, _ = dry_run(tmp_path, 'newsetuptools')
    assert out.returncode != 0
    assert 'setuptools' in out.stderr and ('conflict' in out.stderr.lower()
                                           or 'constraint' in out.stderr.lower()), out.stderr


@needs_venv
def test_pkg_resources_and_torch_requirement_both_hold():
    import importlib.metadata as md

    from packaging.requirements import Requirement
    import pkg_resources  # noqa: F401  (mmengine's pkg:: config lookup)
    setuptools_req = [Requirement(r) for r in md.requires('torch') or []
                      if r.startswith('setuptools')]
    for req in setuptools_req:
        assert md.version('setuptools') in req.specifier, (req, md.version('setuptools'))


# ---- mmcv's ops variant: the set-up's dry run (`--print-mmcv-build`) builds and writes nothing ----

FAKE_NVCC = """#!/bin/sh
case "$1" in
  --version) echo "Cuda compilation tools, release {version}, V{version}.88" ;;
  --list-gpu-arch) printf 'compute_75\\ncompute_80\\ncompute_86\\ncompute_89\\ncompute_90\\ncompute_100\\ncompute_120\\n' ;;
  *) echo "fake nvcc: $*" >&2; exit 1 ;;
esac
"""


def fake_cuda(tmp_path, version='13.0'):
    """A CUDA_HOME whose nvcc only answers --version and --list-gpu-arch (a CI machine may have
    no CUDA toolkit; the dry run needs nothing else from it)."""
    nvcc = tmp_path / 'cuda' / 'bin' / 'nvcc'
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(FAKE_NVCC.format(version=version))
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path / 'cuda')


def print_build(tmp_path, *args, **env_vars):
    """`tools/setup_env.sh --print-mmcv-build` with only the given MMHIRI_* / CUDA_HOME set, no
    GPU visible and an empty wheel cache under tmp_path; returns (process, {field: value})."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('MMHIRI_') and k not in ('CUDA_HOME', 'CUDA_PATH')}
    env.update(CUDA_VISIBLE_DEVICES='', MMHIRI_CACHE=str(tmp_path / 'cache'), **env_vars)
    out = subprocess.run(['bash', SETUP, *(args or ['--print-mmcv-build'])], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    fields = dict(line.split(': ', 1) for line in out.stdout.splitlines() if ': ' in line)
    return out, fields


def stamp_mtime():
    stamp = os.path.join(VENV, '.mmhiri-setup-stamp')
    return os.stat(stamp).st_mtime_ns if os.path.exists(stamp) else None


def expected_key_prefix():
    if not IN_VENV:  # the script then uses .venv's python (or the pins): only the shape is known
        return None
    import torch
    return (f'mmcv-2.1.0-torch{torch.__version__.split("+")[0]}-cp{sys.version_info[0]}'
            f'{sys.version_info[1]}-{platform.machine()}-')


def test_mmcv_build_dry_run_cpu_default_is_todays_build(tmp_path):
    """No GPU, no switch: CPU ops, today's cache key and build environment (GPU hidden,
    FORCE_CUDA=0, nothing CUDA-specific), and nothing built, cached or stamped."""
    stamp = stamp_mtime()
    out, f = print_build(tmp_path)
    assert out.returncode == 0, out.stderr
    assert f['mmcv ops'].startswith('cpu ('), out.stdout
    assert re.fullmatch(r'mmcv-2\.1\.0-torch[\d.]+-cp\d+-\w+-cpu', f['cache key']), f['cache key']
    if expected_key_prefix():
        assert f['cache key'] == expected_key_prefix() + 'cpu'
    assert f['cache dir'] == str(tmp_path / 'cache' / 'wheels' / f['cache key'])
    assert f['cached wheel'].startswith('none')
    assert re.fullmatch(r'CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=\d+',
                        f['build env']), f['build env']
    assert f['build env'] in f['build command'] and 'pip --disable-pip-version-check wheel' in \
        f['build command'] and '--no-build-isolation' in f['build command']
    assert '-std=c++20' in f['source patch']
    assert 'cuda' not in f
    assert not (tmp_path / 'cache').exists()
    assert stamp_mtime() == stamp


def test_mmcv_build_dry_run_cuda_arch_list(tmp_path):
    """MMHIRI_CUDA_ARCH from a machine without a GPU: CUDA ops for the listed architectures
    (sorted, deduplicated), the CUDA version and the architectures in the cache key, and the
    build environment mmcv's setup.py and torch's extension builder read."""
    cuda = fake_cuda(tmp_path)
    out, f = print_build(tmp_path, MMHIRI_CUDA_ARCH='9.0;8.0;9.0', CUDA_HOME=cuda)
    assert out.returncode == 0, out.stderr
    assert f['mmcv ops'].startswith('cuda ('), out.stdout
    assert f['cuda'] == f'13.0 from {cuda}, architectures 8.0;9.0'
    assert re.fullmatch(r'mmcv-2\.1\.0-torch[\d.]+-cp\d+-\w+-cu130-sm80_sm90', f['cache key'])
    if expected_key_prefix():
        assert f['cache key'] == expected_key_prefix() + 'cu130-sm80_sm90'
    env = f['build env'].split(' ')
    assert env[:3] == ['CUDA_VISIBLE_DEVICES=', 'MMCV_WITH_OPS=1', 'FORCE_CUDA=1']
    assert "'TORCH_CUDA_ARCH_LIST=8.0;9.0'" in env and f'CUDA_HOME={cuda}' in env
    include = [e for e in env if e.startswith('CPLUS_INCLUDE_PATH=')]
    assert len(include) == 1 and include[0].endswith('/site-packages/nvidia/cu13/include'), env
    assert f['build env'] in f['build command']
    assert not (tmp_path / 'cache').exists()

    # one architecture, +PTX and the arch-specific variant each get their own key
    out, f = print_build(tmp_path, MMHIRI_CUDA_ARCH='9.0a; 8.6;8.6+PTX', CUDA_HOME=cuda)
    assert out.returncode == 0, out.stderr
    assert f['cache key'].endswith('-cu130-sm86_sm86+ptx_sm90a')


def test_mmcv_build_dry_run_force_cpu(tmp_path):
    """MMHIRI_MMCV_OPS=cpu wins over an architecture list: CPU ops, the CPU key."""
    out, f = print_build(tmp_path, MMHIRI_MMCV_OPS='cpu', MMHIRI_CUDA_ARCH='8.0;9.0',
                         CUDA_HOME=fake_cuda(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f['mmcv ops'] == 'cpu (MMHIRI_MMCV_OPS=cpu; MMHIRI_CUDA_ARCH ignored)'
    assert f['cache key'].endswith('-cpu') and 'FORCE_CUDA=0' in f['build env']
    assert 'TORCH_CUDA_ARCH_LIST' not in f['build command']


@pytest.mark.parametrize('arch', ['8,0', 'sm_90', '9', '8.0 9.0', '8.0;', ';9.0', ' '])
def test_mmcv_build_dry_run_malformed_arch_list(tmp_path, arch):
    out, f = print_build(tmp_path, MMHIRI_CUDA_ARCH=arch, CUDA_HOME=fake_cuda(tmp_path))
    assert out.returncode == 1 and out.stdout == ''
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert f"MMHIRI_CUDA_ARCH='{arch}' is malformed" in lines[0]
    assert 'MAJOR.MINOR separated by ";"' in lines[0] and 'MMHIRI_CUDA_ARCH="8.0;9.0"' in lines[0]


def test_mmcv_build_dry_run_refuses_what_cannot_build(tmp_path):
    """An architecture the toolkit's nvcc cannot compile for, an unknown switch value, and no
    GPU with MMHIRI_MMCV_OPS=cuda: one error line each, before anything is built."""
    out, _ = print_build(tmp_path, MMHIRI_CUDA_ARCH='7.0;9.0', CUDA_HOME=fake_cuda(tmp_path))
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1
    assert 'compute capability 7.0: nvcc 13.0' in out.stderr and '7.5 8.0' in out.stderr
    out, _ = print_build(tmp_path, MMHIRI_MMCV_OPS='gpu')
    assert out.returncode == 1 and 'expected auto (default), cpu or cuda' in out.stderr
    out, _ = print_build(tmp_path, MMHIRI_MMCV_OPS='cuda')
    assert out.returncode == 1 and 'set MMHIRI_CUDA_ARCH' in out.stderr
    out, _ = print_build(tmp_path, MMHIRI_CUDA_ARCH='9.0', CUDA_HOME=str(tmp_path / 'nocuda'))
    assert out.returncode == 1 and 'has no bin/nvcc' in out.stderr


@needs_venv
def test_mmcv_build_dry_run_refuses_another_cuda_major(tmp_path):
    """torch's extension builder refuses an nvcc of another CUDA major version than torch's:
    the set-up says so up front, naming both."""
    import torch
    if torch.version.cuda is None:
        pytest.skip('a CPU-only torch')
    other = '12.8' if not torch.version.cuda.startswith('12.') else '13.0'
    out, _ = print_build(tmp_path, MMHIRI_CUDA_ARCH='9.0',
                         CUDA_HOME=fake_cuda(tmp_path, version=other))
    assert out.returncode == 1, out.stdout
    assert f'torch is built with CUDA {torch.version.cuda}' in out.stderr and other in out.stderr


def test_setup_help_names_the_switches():
    out = subprocess.run(['bash', SETUP, '--help'], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for switch in ('--print-mmcv-build', 'MMHIRI_SETUP_DRY_RUN=1', 'MMHIRI_MMCV_OPS=cpu',
                   'MMHIRI_CUDA_ARCH="8.0;9.0"', 'CUDA_HOME'):
        assert switch in out.stdout, switch
    out = subprocess.run(['bash', SETUP, '--no-such-switch'], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and 'unknown argument' in out.stderr
