"""Choosing between equivalent implementations by timing them where the model runs.

Which of two exact ways to compute a layer is faster depends on the machine: on one AMD EPYC
oneDNN's convolutions ran 2.5x its BLAS matrix products, on another of the same family about
equal (``docs/speed.md``). A :class:`MeasuredChoice` therefore times its candidates on the
real input the first time it meets an input of a new kind (its *key*: shapes, dtype, device,
layout), keeps the fastest for that key, and from then on calls only that one.
"""
import time
from typing import Callable, Dict, Hashable, Optional, Sequence

import torch


def size_bucket(n: int) -> int:
    """Inputs whose sizes round to the same power of two share a decision: a detector's
    test images come in many sizes, and timing every one of them would cost more than any
    route saves."""
    return max(int(n), 1).bit_length()


def _sync(t: torch.Tensor) -> None:
    if t.device.type == 'cuda':
        torch.cuda.synchronize(t.device)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    scale = b.detach().abs().max().clamp_min(1e-12)
    return bool(((a.detach() - b.detach()).abs().max() / scale) <= rtol)


class MeasuredChoice:
    """The fastest of ``candidates`` per key, measured on the first input of that key.

    ``candidates[0]`` is the reference (the standard op): another candidate whose output
    differs from it by more than ``rtol`` (relative to the reference's largest magnitude) is
    never chosen, nor one that raises. Each candidate runs once untimed (warm-up: first-call
    allocations, weight packing), then ``repeats`` timed runs; the smallest time counts.
    ``forced`` pins every decision to one candidate where it applies (tests, A/B
    measurements); inputs it does not apply to run the reference.
    """

    def __init__(self, candidates: Sequence[str], repeats: int = 3, rtol: float = 1e-4,
                 forced: Optional[str] = None):
        if not candidates:
            raise ValueError('MeasuredChoice needs at least one candidate')
        self.candidates = tuple(candidates)
        self.repeats = repeats
        self.rtol = rtol
        self.forced = forced
        self.chosen: Dict[Hashable, str] = {}
        self.timings: Dict[Hashable, Dict[str, float]] = {}

    def __call__(self, key: Hashable, fns: Dict[str, Callable[[], torch.Tensor]]
                 ) -> torch.Tensor:
        if self.forced is not None:
            return fns.get(self.forced, fns[self.candidates[0]])()
        name = self.chosen.get(key)
        if name is not None:
            return fns[name]()
        return self._measure(key, fns)

    def _measure(self, key, fns) -> torch.Tensor:
        ref, outs, times = None, {}, {}
        for name in self.candidates:
            if name not in fns:
                continue
            try:
                out = fns[name]()
            except (RuntimeError, NotImplementedError):
                if ref is None:
                    raise  # the reference itself must work
                continue
            if ref is None:
                ref = out
            elif not _close(out, ref, self.rtol):
                continue
            outs[name] = out
            best = float('inf')
            for _ in range(self.repeats):
                _sync(out)
                t0 = time.perf_counter()
                fns[name]()
                _sync(out)
                best = min(best, time.perf_counter() - t0)
            times[name] = best
        name = min(times, key=times.get)
        self.chosen[key] = name
        self.timings[key] = times
        return outs[name]

    def summary(self) -> Dict[str, int]:
        """How many keys each candidate won."""
        counts = {n: 0 for n in self.candidates}
        for name in self.chosen.values():
            counts[name] += 1
        return counts
