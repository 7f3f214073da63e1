"""Let mmengine checkpoints load under torch's safe (``weights_only=True``) unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7 calls it
without that argument, and its checkpoints carry a few non-tensor objects in ``meta`` (the
message hub's ``HistoryBuffer`` logs, numpy arrays and scalars), so resuming fails. Instead of
switching safe loading off, :func:`allow_mmengine_checkpoints` adds exactly those classes to
torch's allow-list of safe globals. Nothing that can execute arbitrary code is allowed.
"""
import importlib

import torch

# (module, attribute) of every global an mmengine 0.10 Runner checkpoint needs.
SAFE_GLOBALS = (
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('mmengine.config.config', 'ConfigDict'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.dtypes', 'Float64DType'),
    ('numpy.dtypes', 'Float32DType'),
    ('numpy.dtypes', 'Int64DType'),
    ('numpy.dtypes', 'Int32DType'),
    ('numpy.dtypes', 'BoolDType'),
)


def _resolve(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def allow_mmengine_checkpoints() -> list:
    """Add the globals of :data:`SAFE_GLOBALS` to torch's safe-loading allow-list.

    Idempotent; returns the objects it allowed."""
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4: nothing to do
        return []
    objs = [obj for obj in (_resolve(m, n) for m, n in SAFE_GLOBALS) if obj is not None]
    torch.serialization.add_safe_globals(objs)
    return objs
