"""Time 10^5 batched irreducible products per path: dense (3^l) reference vs compact (2l+1).

Usage: python benchmarks/tensor_products.py [--batch 100000] [--repeats 7] [--max-rank 3]
Prints one row per path (forward and forward+backward, median ms) and the dense/compact ratios.
"""

import argparse
import functools
import os

import torch
from common import median_time

from ictp_model.tensor import (
    compact_product,
    coupling_tensor,
    irreducible_product,
    is_odd_path,
    product_paths,
    stf_project,
    to_compact,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-rank", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    n = args.batch
    print(f"# {n} products per call, {args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    header = f"{'path':>9} {'kind':>4} | {'dense fwd':>9} {'compact fwd':>11} {'ratio':>6} |"
    header += f" {'dense f+b':>9} {'compact f+b':>11} {'ratio':>6}"
    print(header)
    ratios_fwd, ratios_bwd = [], []
    for l1, l2, l3 in product_paths(args.max_rank, args.max_rank, args.max_rank, odd=True):
        x = stf_project(torch.randn(n, *([3] * l1), dtype=dtype), l1)
        y = stf_project(torch.randn(n, *([3] * l2), dtype=dtype), l2)
        xc, yc = to_compact(x, l1), to_compact(y, l2)
        coupling_tensor(l1, l2, l3)  # build the cached table outside the timed region

        dense = functools.partial(irreducible_product, x, l1, y, l2, l3)
        compact = functools.partial(compact_product, xc, l1, yc, l2, l3)

        def with_backward(fn, inputs):
            def run():
                for t in inputs:
                    t.grad = None
                    t.requires_grad_(True)
                fn().pow(2).sum().backward()

            return run

        d_f = 1e3 * median_time(dense, args.repeats)
        c_f = 1e3 * median_time(compact, args.repeats)
        d_b = 1e3 * median_time(with_backward(dense, (x, y)), args.repeats)
        c_b = 1e3 * median_time(with_backward(compact, (xc, yc)), args.repeats)
        for t in (x, y, xc, yc):
            t.requires_grad_(False)
        ratios_fwd.append(d_f / c_f)
        ratios_bwd.append(d_b / c_b)
        kind = "odd" if is_odd_path(l1, l2, l3) else "even"
        row = f"{l1}x{l2}->{l3:<2} {kind:>4} | {d_f:9.2f} {c_f:11.2f} {d_f / c_f:6.1f} |"
        row += f" {d_b:9.2f} {c_b:11.2f} {d_b / c_b:6.1f}"
        print(row)
    geo = lambda v: torch.tensor(v).log().mean().exp().item()  # noqa: E731
    print(
        f"# geometric-mean dense/compact ratio: forward {geo(ratios_fwd):.1f}x, forward+backward {geo(ratios_bwd):.1f}x"
    )
    print(f"# load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
