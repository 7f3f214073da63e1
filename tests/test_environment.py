"""The set-up environment survives a user's `pip install X` (no network: local fake wheels and
pip's dry run with its resolver report)."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

VENV = os.path.join(ROOT, '.venv')
pytestmark = pytest.mark.skipif(
    os.path.realpath(sys.prefix) != os.path.realpath(VENV),
    reason='checks the environment that `make setup` builds (run through `make test`)')


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


def test_venv_pip_config_names_the_constraints():
    with open(os.path.join(VENV, 'pip.conf')) as f:
        conf = f.read()
    assert os.path.join(ROOT, 'requirements', 'constraints.txt') in conf
    out = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], capture_output=True,
                         text=True)
    assert 'constraints.txt' in out.stdout


def test_installing_a_torch_dependent_package_moves_nothing(tmp_path):
    """What `pip install timm` did before: torch's declared setuptools>=77 made pip replace the
    setuptools that mmengine's pkg:: lookup needs. A newer setuptools is on offer here."""
    fake_wheel(tmp_path, 'setuptools', '84.0.0')
    fake_wheel(tmp_path, 'torchplugin', '1.0', ['torch', 'setuptools>=77', 'numpy'])
    out, installs = dry_run(tmp_path, 'torchplugin')
    assert out.returncode == 0, out.stderr
    assert installs == ['torchplugin']


def test_a_package_that_needs_another_stack_is_refused(tmp_path):
    fake_wheel(tmp_path, 'setuptools', '84.0.0')
    fake_wheel(tmp_path, 'newsetuptools', '1.0', ['setuptools>=82'])
    out, _ = dry_run(tmp_path, 'newsetuptools')
    assert out.returncode != 0
    assert 'setuptools' in out.stderr and ('conflict' in out.stderr.lower()
                                           or 'constraint' in out.stderr.lower()), out.stderr


def test_pkg_resources_and_torch_requirement_both_hold():
    import importlib.metadata as md

    from packaging.requirements import Requirement
    import pkg_resources  # noqa: F401  (mmengine's pkg:: config lookup)
    setuptools_req = [Requirement(r) for r in md.requires('torch') or []
                      if r.startswith('setuptools')]
    for req in setuptools_req:
        assert md.version('setuptools') in req.specifier, (req, md.version('setuptools'))
