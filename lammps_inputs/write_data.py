"""Write a LAMMPS data file (atom_style atomic) for the example inputs.

    python lammps_inputs/write_data.py alloy  cuau.data           # 4x4x4 fcc Cu-Au, 256 atoms
    python lammps_inputs/write_data.py cluster cluster.data       # a 55-atom Cu-Au cluster (finite)
    python lammps_inputs/write_data.py FILE.xyz out.data --elements H C O   # any ASE-readable structure

Atom types follow --elements (default: the order used in the example inputs, Cu Au); the cell is
rotated into LAMMPS' orientation by ASE if needed.
"""

import argparse

import numpy as np
from ase.build import bulk
from ase.cluster import Icosahedron
from ase.io import read, write


def alloy(repeat: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((repeat,) * 3)
    atoms.set_chemical_symbols(rng.choice(["Cu", "Au"], size=len(atoms)).tolist())
    return atoms


def cluster(seed: int = 0):
    rng = np.random.default_rng(seed)
    atoms = Icosahedron("Cu", noshells=3, latticeconstant=3.75)
    atoms.set_chemical_symbols(rng.choice(["Cu", "Au"], size=len(atoms)).tolist())
    atoms.center(vacuum=15.0)
    return atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="alloy, cluster or a structure file")
    parser.add_argument("out")
    parser.add_argument("--elements", nargs="+", default=["Cu", "Au"])
    parser.add_argument("--repeat", type=int, default=4, help="alloy: fcc cubic cells per direction")
    args = parser.parse_args()
    atoms = {"alloy": lambda: alloy(args.repeat), "cluster": cluster}.get(args.source, lambda: read(args.source, 0))()
    write(args.out, atoms, format="lammps-data", specorder=args.elements, atom_style="atomic", masses=True)
    print(f"wrote {args.out}: {len(atoms)} atoms, types {' '.join(args.elements)}")


if __name__ == "__main__":
    main()
