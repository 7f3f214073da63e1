"""The memory a run would need, estimated before it is allocated.

Both halves are simple on purpose, and say what they leave out:

* :func:`available_memory`: what the machine can give this process now: the kernel's
  ``MemAvailable`` (through psutil), lowered to the cgroup's limit minus its usage where one is
  set (containers); :func:`device_free_memory` for a CUDA device.
* :func:`fit_forward_memory`: the memory a forward needs as a function of its input's pixels.
  The forward runs at two small sizes under :class:`LiveTensorBytes`, which adds up the bytes of
  every tensor storage created while it runs (its input included) and records, after each
  operation, the bytes still alive. Where the two runs execute the same operations, each of
  these points is fitted as ``a + b * pixels`` (:class:`MemoryFit` takes the largest); after
  the first operation where they part (a data-dependent step such as NMS), what the rest adds
  above the fitted level is taken as constant. Convolutions, norms and windowed attention grow
  linearly with the pixels, so the fit extrapolates them; attention over all tokens grows
  faster, so for it the figure is a lower bound. Not counted: the model's weights (already in
  memory), allocator overhead and kernels' internal buffers.

``tools/infer.py`` and ``tools/analysis/get_flops.py`` stop with one line when the estimate
exceeds what is available (see :func:`fits`).
"""
import os
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GB = 1e9


def gb(n: float) -> str:
    """``n`` bytes in GB (10^9 bytes), one decimal; '<0.1 GB' below that."""
    return f'{n / GB:.1f} GB' if n >= 0.05 * GB else '<0.1 GB'


def _cgroup_room() -> Optional[int]:
    """Bytes the cgroup (v2 or v1) still allows, or None without a limit."""
    for limit_file, usage_file in (('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'),
                                   ('/sys/fs/cgroup/memory/memory.limit_in_bytes',
                                    '/sys/fs/cgroup/memory/memory.usage_in_bytes')):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # v1 writes a huge number for "none"
            return max(0, int(limit) - usage)
    return None


def available_memory() -> int:
    """Host memory this process can still allocate, in bytes (see the module docstring)."""
    try:
        import psutil
        free = psutil.virtual_memory().available
    except ImportError:
        free = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    room = _cgroup_room()
    return free if room is None else min(free, room)


def device_free_memory(device) -> Optional[int]:
    """Free memory of a CUDA ``device`` in bytes; None for the CPU."""
    device = torch.device(device)
    if device.type != 'cuda':
        return None
    return torch.cuda.mem_get_info(device)[0]


class LiveTensorBytes(TorchDispatchMode):
    """Inside ``with LiveTensorBytes() as m:``, ``m.timeline`` holds ``(operation, bytes)``:
    after each operation, the bytes held by the tensor storages created inside that are still
    alive (views and in-place results share their storage and count once); ``m.peak`` is the
    largest."""

    def __init__(self):
        super().__init__()
        self.live = {}  # storage address -> (weak reference, bytes)
        self.now = self.peak = 0
        self.timeline = []

    def _release_dead(self) -> None:
        for key, (ref, n) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.now -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._release_dead()  # before adding: a freed address may be handed out again
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != 'meta':
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        self.timeline.append((str(func), self.now))
        return out


def record(run: Callable[[], object]) -> LiveTensorBytes:
    """``run()`` without autograd under :class:`LiveTensorBytes`; returns the record."""
    with torch.no_grad(), LiveTensorBytes() as m:
        run()
    return m


def peak_bytes(run: Callable[[], object]) -> int:
    """The peak of live tensor bytes while ``run()`` runs, without autograd."""
    return record(run).peak


class MemoryFit:
    """Bytes a forward needs at ``pixels``: the largest of the lines ``a + b * pixels``."""

    def __init__(self, lines: Sequence[Tuple[float, float]]):
        self.lines = list(lines)

    def __call__(self, pixels: float) -> float:
        return max(a + b * pixels for a, b in self.lines)

    def max_pixels(self, room: float) -> float:
        """The most pixels whose bytes stay within ``room`` (0 if none; inf if any)."""
        if any(a > room for a, _ in self.lines):
            return 0.
        return min(((room - a) / b for a, b in self.lines if b > 0), default=float('inf'))


def fit_forward_memory(run: Callable[[int, int], object],
                       sizes: Sequence[Tuple[int, int]] = ((128, 128), (256, 256))) -> MemoryFit:
    """The bytes ``run(h, w)`` (which makes its input and runs the forward) needs, as a
    function of ``h * w``, from its records at the two ``sizes`` (see the module docstring)."""
    (h1, w1), (h2, w2) = sizes
    p1, p2 = h1 * w1, h2 * w2
    t1, t2 = record(lambda: run(h1, w1)).timeline, record(lambda: run(h2, w2)).timeline
    same = 0
    while same < min(len(t1), len(t2)) and t1[same][0] == t2[same][0]:
        same += 1

    def line(m1, m2):
        b = max(0., (m2 - m1) / (p2 - p1))
        return m1 - b * p1, b

    lines = [line(t1[i][1], t2[i][1]) for i in range(same)] or [(0., 0.)]
    if same < max(len(t1), len(t2)):  # the part after the runs part: its excess, constant
        base1, base2 = (t1[same - 1][1], t2[same - 1][1]) if same else (0, 0)
        extra = max(max((m for _, m in t1[same:]), default=base1) - base1,
                    max((m for _, m in t2[same:]), default=base2) - base2, 0)
        a, b = line(base1, base2)
        lines.append((a + extra, b))
    return MemoryFit(lines)


def fits(needed: float, available: float, fixed: float = 0) -> Tuple[bool, float]:
    """``(needed <= available, scale)``: ``scale`` is the factor on each side of the input
    (at most 1) that would fit, when everything but ``fixed`` bytes grows with the pixels."""
    if needed <= available:
        return True, 1.
    room, grows = available - fixed, needed - fixed
    return False, max(0., room / grows) ** 0.5 if room > 0 and grows > 0 else 0.
