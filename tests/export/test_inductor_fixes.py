"""The correction to inductor's choice of parallel loop (ictp_export.inductor_fixes)."""

import pytest
import sympy
import torch

from ictp_export.inductor_fixes import outer_loops_stay_parallel

cpp = pytest.importorskip("torch._inductor.codegen.cpp")

ROWS = 64 * sympy.Symbol("s0", positive=True, integer=True)  # (atom, channel) rows: a dynamic count


def loop(size, steps=1, reduction=False):
    return cpp.LoopLevel(
        sympy.Symbol(f"x{size}"),
        sympy.Integer(size) if isinstance(size, int) else size,
        steps=sympy.Integer(steps),
        is_reduction=reduction,
    )


def components_then_slots():
    """for row < 64 s0: for m < 5 (one vector of 8): sum over 10 slots (the product basis' fold)"""
    return cpp.LoopNest([loop(ROWS), loop(5, steps=8), loop(10, reduction=True)])


def test_a_vector_loop_shorter_than_a_vector_keeps_the_outer_loops_parallel():
    with outer_loops_stay_parallel():
        assert components_then_slots().max_parallel_depth() == cpp.ParallelDepth(parallel_depth=2, start_depth=0)


@pytest.mark.skipif(not torch.__version__.startswith("2.13"), reason="the miscount was seen in torch 2.13")
def test_without_it_torch_parallelises_the_ten_slot_reduction():
    assert components_then_slots().max_parallel_depth() == cpp.ParallelDepth(parallel_depth=1, start_depth=2)


def test_really_short_outer_loops_still_hand_the_parallelism_inwards():
    nest = cpp.LoopNest([loop(2), loop(100_000, reduction=True)])
    with outer_loops_stay_parallel():
        assert nest.max_parallel_depth() == cpp.ParallelDepth(parallel_depth=1, start_depth=1)


def test_the_correction_ends_with_its_context():
    original = cpp.LoopNest.max_parallel_depth
    with outer_loops_stay_parallel():
        assert cpp.LoopNest.max_parallel_depth is not original
    assert cpp.LoopNest.max_parallel_depth is original
