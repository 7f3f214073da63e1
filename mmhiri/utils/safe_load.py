"""Let mmengine checkpoints load under torch's safe (``weights_only=True``) unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7 calls it
without that argument, and its checkpoints carry a few non-tensor objects in ``meta`` (the
message hub's ``HistoryBuffer`` logs, numpy arrays and scalars), so resuming fails. Instead of
switching safe loading off, :func:`allow_mmengine_checkpoints` adds exactly those classes to
torch's allow-list of safe globals. Nothing that can execute arbitrary code is allowed.

One more object needs care: ``HistoryBuffer.__getstate__`` pickles its default statistics
methods (``min``, ``max``, ``current``, ``mean``) by reference, which the unpickler can only
resolve through ``builtins.getattr`` - not something to allow. Those defaults are re-registered
by ``HistoryBuffer.__setstate__`` anyway, so the patched ``__getstate__`` leaves them out (custom
methods registered with ``HistoryBuffer.register_statistics`` are still saved). Checkpoints saved
before this patch (by a process that never imported mmhiri) still hold the references and load
only with ``weights_only=False``.
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


_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the default statistics methods (see above)."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {k: v for k, v in self._statistics_methods.items() if k not in _DEFAULT_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


def allow_mmengine_checkpoints() -> list:
    """Add the globals of :data:`SAFE_GLOBALS` to torch's safe-loading allow-list and make
    ``HistoryBuffer`` pickle without ``getattr`` references.

    Idempotent; returns the objects it allowed."""
    history_buffer = _resolve('mmengine.logging.history_buffer', 'HistoryBuffer')
    if history_buffer is not None:
        history_buffer.__getstate__ = _history_buffer_getstate
    if not hasattr(torch.serialization, 'add_safe_globals'):  # torch < 2.4: nothing to do
        return []
    objs = [obj for obj in (_resolve(m, n) for m, n in SAFE_GLOBALS) if obj is not None]
    torch.serialization.add_safe_globals(objs)
    return objs


def load_without_copy(path: str):
    """``torch.load`` of ``path`` onto the CPU, memory-mapped where the file's format allows it
    (reading ``meta`` then does not read every tensor), else read whole (the legacy format)."""
    try:
        return torch.load(path, map_location='cpu', mmap=True)
    except RuntimeError as e:
        if 'mmap can only be used' not in str(e):
            raise
        return torch.load(path, map_location='cpu')
