"""Merge the results of several `benchmarks/vs_mace.py` runs of one data set (one seed each, e.g.
run one after another on a shared machine) into one table and one figure.

    python benchmarks/vs_mace_summary.py runs/eth_s0 runs/eth_s1 runs/eth_s2 --title "rMD17 ethanol N=50"
"""

import argparse
import json
from pathlib import Path

from vs_mace import plot, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="--work-dir folders of vs_mace.py runs")
    parser.add_argument("--title", default="ICTP and MACE")
    parser.add_argument("--out", type=Path, default=None, help="figure (default: curves.png in the first folder)")
    args = parser.parse_args()
    results = {}
    for folder in args.folders:
        for seed, runs in json.loads((folder / "results.json").read_text()).items():
            if seed in results:
                raise SystemExit(f"{folder}: seed {seed} is also in another folder")
            results[seed] = runs
    shortest = min(r["curve"][-1][0] for runs in results.values() for r in runs.values())
    print(f"{args.title}: {len(results)} seeds ({', '.join(map(str, args.folders))})")
    summary(results, sorted({e for e in (10, 25, 50, 100, 200, 400) if e <= shortest} | {shortest}))
    out = args.out or args.folders[0] / "curves_all.png"
    plot(results, out, args.title)
    print(f"curves: {out}")


if __name__ == "__main__":
    main()
