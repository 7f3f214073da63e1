"""The ``mmhiri`` model registry.

``MODELS`` is a child of mmengine's root registry with the scope ``mmhiri``, so every framework
finds our modules as ``type='mmhiri.<Name>'`` (mmengine imports ``mmhiri.registry`` on its own
when it meets the ``mmhiri.`` prefix, and the registry imports ``mmhiri.models`` lazily).
:func:`register_model` also registers the class in the root registry, so that after
``custom_imports=dict(imports=['mmhiri'])`` the plain ``type='<Name>'`` resolves from the
mmdet, mmseg, mmpose and mmpretrain registries, which all fall back to the root.
"""
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=ROOT_MODELS, scope='mmhiri', locations=['mmhiri.models'])


def register_model(cls=None, *, name=None):
    """Register ``cls`` once in the ``mmhiri`` scope and once in the root registry."""

    def _register(module):
        MODELS.register_module(name=name, module=module)
        ROOT_MODELS.register_module(name=name, module=module)
        return module

    return _register if cls is None else _register(cls)
