"""A correction to inductor's CPU code generation (torch 2.13), applied while the ``.pt2`` compiles.

Inductor parallelises a loop nest over its outer loops unless they hold far fewer steps than the
first inner loop (``LoopNest.max_parallel_depth``: steps · 300 < inner size), in which case it
parallelises the inner loop instead.  It counts a loop's steps as size // vector width, so a
vectorised loop over one block's 3, 5 or 7 Cartesian components (shorter than one vector) counts
as 0 steps, and the whole outer range with it: a reduction over 10 slots inside a loop over
N · C (atom, channel) rows was then run as N · C parallel regions of 10 additions each (the
float64 product basis: 14.7 ms of a 113 ms call on a 128-atom cell, 2 threads).  Here, when the
outer loops hold such a loop, they stay the parallel ones (the nest as inductor builds it without
the inward switch); other nests are left as inductor chose.  Only the choice of loop to
parallelise changes, never the arithmetic (the package equals the TorchScript export to 1e-10 in
tests/export/test_compiled.py).
"""

import contextlib
from collections.abc import Iterator

import sympy


@contextlib.contextmanager
def outer_loops_stay_parallel() -> Iterator[None]:
    """Within this context a loop nest whose outer loops hold a vector loop shorter than one vector
    is parallelised over those outer loops."""
    try:
        from torch._inductor.codegen.cpp import LoopNest, ParallelDepth
    except ImportError:  # another torch: its code generation is its own
        yield
        return
    original = LoopNest.max_parallel_depth

    def max_parallel_depth(self: LoopNest) -> ParallelDepth:
        depth = original(self)
        if depth.start_depth == 0 or self.loops is None:
            return depth
        outer = self.loops[: depth.start_depth]
        if not any(_shorter_than_a_vector(loop) for loop in outer):
            return depth  # the outer loops are really that short
        return ParallelDepth(parallel_depth=depth.start_depth, start_depth=0)

    LoopNest.max_parallel_depth = max_parallel_depth
    try:
        yield
    finally:
        LoopNest.max_parallel_depth = original


def _shorter_than_a_vector(loop) -> bool:
    size, steps = sympy.sympify(loop.size), sympy.sympify(loop.steps)
    return bool(size.is_Integer and steps.is_Integer and 0 < size < steps)
