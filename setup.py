"""mmhiri's package, including the ``mmhiri/.mim/`` folder that openmim (``mim``) looks for.

``mmhiri/.mim/{configs,tools,model-index.yml}`` are committed as relative symlinks to the
repository's ``configs/``, ``tools/`` and ``model-index.yml``:

* a wheel (``pip install .``, ``pip wheel .``) and the sdist carry real copies of them
  (``package_data`` below: the files are read through the links);
* an editable install (``pip install -e .``, PEP 660) leaves the package in the repository,
  but openmim's ``mim search/train/test/run`` look for ``<location>/mmhiri/.mim/``, where
  ``<location>`` is the folder of the package's metadata (``pkg_resources``), i.e.
  site-packages, and a wheel (the editable one too) cannot hold a link. The editable wheel
  therefore puts the repository root on ``sys.path`` (a path entry, as ``setup.py develop``
  did) and adds a ``<site-packages>/mmhiri/.mim/`` of redirects into the repository:
  ``model-index.yml`` imports the repository's index, every ``configs/**/*.py`` inherits its
  original (``_base_``) and every ``tools/**/*.py`` runs its original. Edits in the repository
  are seen at once; a new config or tool needs ``pip install -e .`` again to be found by name.
"""
import os
import os.path as osp

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_DIR = osp.join('mmhiri', '.mim')
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'mmhiri', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def _walk(top):
    """Files under ``top`` (followed through links), relative to it; no byte-code."""
    if osp.isfile(top):
        return ['']
    found = []
    for d, dirs, files in os.walk(top, followlinks=True):
        dirs[:] = sorted(x for x in dirs if x != '__pycache__')
        found += [osp.relpath(osp.join(d, f), top) for f in sorted(files)
                  if not f.endswith(('.pyc', '.pyo'))]
    return found


def mim_package_data():
    """``mmhiri/.mim/...`` paths (relative to ``mmhiri/``) that the wheel carries as files."""
    missing = [i for i in MIM_ITEMS if not osp.exists(osp.join(ROOT, MIM_DIR, i))]
    if missing:
        raise SystemExit(f'{MIM_DIR}/ lacks {missing}: it should hold links to ../../' + ', ../../'
                         .join(MIM_ITEMS) + ' (a checkout without symlinks cannot build mmhiri)')
    files = []
    for item in MIM_ITEMS:
        for rel in _walk(osp.join(ROOT, MIM_DIR, item)):
            files.append(osp.normpath(osp.join('.mim', item, rel)))
    return files


def mim_redirects(root):
    """``(path in the wheel, text)`` of the editable install's ``mmhiri/.mim/`` (see above)."""
    yield (f'{MIM_DIR}/model-index.yml',
           f'# mmhiri installed in editable mode from {root}: its model index is read there.\n'
           f'Import:\n- {osp.join(root, "model-index.yml")}\n')
    for item, suffix in (('configs', '.py'), ('tools', '.py')):
        for rel in _walk(osp.join(root, item)):
            if not rel.endswith(suffix):
                continue
            target = osp.join(root, item, rel)
            if item == 'configs':
                text = (f'# mmhiri installed in editable mode: this config is {target}\n'
                        f'_base_ = {target!r}\n')
            else:
                text = (f'# mmhiri installed in editable mode: this runs {target}\n'
                        'import runpy\nimport sys\n\n'
                        f'sys.argv[0] = {target!r}\nsys.path[0] = {osp.dirname(target)!r}\n'
                        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
            yield f'{MIM_DIR}/{item}/{rel}', text


cmdclass = {}
try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: no PEP 660 editable wheels
    editable_wheel = None

if editable_wheel is not None:

    class _WithMimRedirects:
        """An editable-wheel strategy of setuptools, plus the ``mmhiri/.mim/`` redirects."""

        def __init__(self, strategy):
            self.strategy = strategy

        def __enter__(self):
            self.strategy.__enter__()
            return self

        def __exit__(self, *exc):
            return self.strategy.__exit__(*exc)

        def __call__(self, wheel, files, mapping):
            self.strategy(wheel, files, mapping)
            for arcname, text in mim_redirects(ROOT):
                wheel.writestr(arcname, text.encode())

    class EditableWheel(editable_wheel):

        def _select_strategy(self, name, tag, build_lib):
            strategy = super()._select_strategy(name, tag, build_lib)
            # With setuptools' import-hook strategy (a meta-path finder placed after the path
            # finder), a <site-packages>/mmhiri folder would shadow the package as a namespace
            # package; the path-entry strategies (package_dir={'': '.'} below selects the
            # plain .pth one) leave the regular package in the repository first.
            if type(strategy).__name__ not in ('_StaticPth', '_LinkTree'):
                print(f'mmhiri: editable strategy {type(strategy).__name__}: no mmhiri/.mim/ in '
                      'site-packages (mim search/train/test will not find mmhiri)')
                return strategy
            return _WithMimRedirects(strategy)

    cmdclass['editable_wheel'] = EditableWheel


setup(
    name='mmhiri',
    version=get_version(),
    description='HIRI-ViT, ViTAE and ViTAEv2 backbones for OpenMMLab 2.x '
    '(mmdet, mmseg, mmpose, mmpretrain)',
    long_description=open(osp.join(ROOT, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    # The packages sit at the project root; saying so makes an editable install a plain path
    # entry for the repository root (see EditableWheel).
    package_dir={'': '.'},
    package_data={'mmhiri': mim_package_data()},
    python_requires='>=3.8',
    # The environment is built by tools/setup_env.sh (mmcv needs a source build);
    # only what `import mmhiri` itself needs is declared here.
    install_requires=['torch>=2.0', 'mmengine>=0.10.0'],
    license='Apache License 2.0',
    zip_safe=False,
    cmdclass=cmdclass,
)
