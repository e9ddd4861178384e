"""`ictp demo`: the README's main job, runnable on a fresh machine without any download."""

import argparse
import time

import torch

from ictp_model import tensor as t


def algebra_self_check(max_rank: int = 4) -> float:
    """Check the defining identities of the algebra on random inputs; returns the worst error."""
    worst = 0.0
    n = torch.randn(16, 3, dtype=torch.float64)
    q = t.random_o3(reflection=True)
    for l1, l2, l3 in t.product_paths(max_rank, max_rank, max_rank, odd=True):
        x, y = t.cartesian_harmonics(n, l1), t.cartesian_harmonics(n.flip(0), l2)
        z = t.irreducible_product(x, l1, y, l2, l3)
        rotated = t.irreducible_product(t.rotate(x, l1, q), l1, t.rotate(y, l2, q), l2, l3)
        errors = [(rotated - t.rotate(z, l3, q, pseudo=t.is_odd_path(l1, l2, l3))).abs().max()]
        errors.append(
            (t.compact_product(t.to_compact(x, l1), l1, t.to_compact(y, l2), l2, l3) - t.to_compact(z, l3)).abs().max()
        )
        if not t.is_odd_path(l1, l2, l3):
            same = t.irreducible_product(x, l1, t.cartesian_harmonics(n, l2), l2, l3)
            errors.append((same - t.cartesian_harmonics(n, l3)).abs().max())
        worst = max(worst, max(float(e) for e in errors))
    return worst


def run_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    worst = algebra_self_check()
    print(
        f"algebra self-check (every path up to rank 4, O(3) with reflection, compact == dense): max error {worst:.2e}"
    )
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0 if worst < 1e-10 else 1
