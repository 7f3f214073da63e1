from setuptools import find_packages, setup


def get_version():
    scope = {}
    with open('mmhiri/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmhiri',
    version=get_version(),
    description='HIRI-ViT, ViTAE and ViTAEv2 backbones for OpenMMLab 2.x '
    '(mmdet, mmseg, mmpose, mmpretrain)',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.8',
    # The environment is built by tools/setup_env.sh (mmcv needs a source build);
    # only what `import mmhiri` itself needs is declared here.
    install_requires=['torch>=2.0', 'mmengine>=0.10.0'],
    license='Apache License 2.0',
    zip_safe=False,
)
