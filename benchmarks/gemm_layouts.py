"""The two layouts of a radial head's input gradient, g @ mᵀ and (m @ gᵀ)ᵀ, timed on this CPU.

The model's radial heads map (E, 64) radial features to (E, P·C) edge weights; forces need the
gradient g (E, P·C) @ mᵀ, a long, thin product whose inner dimension is the wide one.
nn.linear.wide_matmul forms it as (m @ gᵀ)ᵀ in float64 on CPU and plainly otherwise; this script
shows why, and lets a user check the choice on their machine.  Rows: the head widths of the
speed benchmarks' model (C = 64, l_max = 3, ν = 3) at the edge count of the bcc128 cell.

Usage: python benchmarks/gemm_layouts.py [--edges 3328] [--repeats 30] [--threads 2]
"""

import argparse
import functools

import torch
from common import median_time


def gradient_plain(g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.matmul(g, m.t())


def gradient_transposed(g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.matmul(m, g.t()).t()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=3328)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--widths", default="448,384,256")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"E = {args.edges}, K = {args.hidden}, {args.threads} threads; median ms of 3 interleaved rounds")
    print(f"{'dtype':>8} {'width':>6} {'g @ mT':>9} {'(m @ gT)T':>10} {'ratio':>6}")
    for dtype in (torch.float64, torch.float32):
        for width in (int(w) for w in args.widths.split(",")):
            m = torch.randn(args.hidden, width, dtype=dtype)
            g = torch.randn(args.edges, width, dtype=dtype)
            plain, transposed = [], []
            for _ in range(3):  # interleaved, so a slow spell of the machine hits both
                plain.append(median_time(functools.partial(gradient_plain, g, m), args.repeats))
                transposed.append(median_time(functools.partial(gradient_transposed, g, m), args.repeats))
            a, b = sorted(plain)[1] * 1e3, sorted(transposed)[1] * 1e3
            print(f"{str(dtype).split('.')[1]:>8} {width:>6} {a:9.2f} {b:10.2f} {a / b:6.2f}")


if __name__ == "__main__":
    main()
