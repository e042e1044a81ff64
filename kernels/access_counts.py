"""Memory accesses the Triton kernels make, counted by Triton's interpreter (no GPU needed).

``count_accesses()`` is a context manager: inside it (with ``TRITON_INTERPRET=1`` set before the
kernels were imported), every masked-in element of a ``tl.load`` is counted per element dtype and
every masked-in element of a ``tl.atomic_add`` is counted. Loads of a bfloat16 image are then
told apart from the float32 coordinates; the backward's incoming gradient has the image dtype
too (it is read exactly once per output element, so it can be subtracted). This is how the
per-sample image reads and atomics of the forward and backward are measured for
``benchmarks/gpu_static_report.py`` and checked by the tests.
"""

from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class AccessCounts:
    """Masked-in elements of the loads, by Triton element type name ("bf16", "fp32", ...), and
    of the atomic read-modify-writes."""

    loads: collections.Counter = field(default_factory=collections.Counter)
    atomics: int = 0


@contextlib.contextmanager
def count_accesses():
    """Counts the accesses of the interpreted kernels run inside the block (yields the
    :class:`AccessCounts`)."""
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    counts = AccessCounts()
    masked_load = builder.create_masked_load
    atomic_rmw = builder.create_atomic_rmw

    def counting_load(self, ptrs, mask, *args, **kwargs):
        counts.loads[str(ptrs.get_element_ty())] += int(np.count_nonzero(mask.data))
        return masked_load(self, ptrs, mask, *args, **kwargs)

    def counting_atomic(self, op, ptr, val, mask, *args, **kwargs):
        counts.atomics += int(np.count_nonzero(mask.data))
        return atomic_rmw(self, op, ptr, val, mask, *args, **kwargs)

    builder.create_masked_load = counting_load
    builder.create_atomic_rmw = counting_atomic
    try:
        yield counts
    finally:
        builder.create_masked_load = masked_load
        builder.create_atomic_rmw = atomic_rmw
