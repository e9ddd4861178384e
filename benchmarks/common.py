"""Shared helpers for the benchmark scripts: structures, MACE reference models, timing."""

import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

DEFAULT_MOLECULE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3bpa" / "train_300K.xyz"
ELEMENTS = ["H", "C", "N", "O"]


def molecule(path: str | None = None) -> Atoms:
    """The first frame of the 3BPA training set (a 27-atom drug-like molecule)."""
    path = Path(path) if path else DEFAULT_MOLECULE
    if not path.is_file():
        raise SystemExit(
            f"molecule file {path} not found: pass --molecule PATH (e.g. ../shared/data/3bpa/train_300K.xyz)"
        )
    return read(path, index=0)


def bcc_cell(repeat, a: float = 3.2, seed: int = 0) -> Atoms:
    """A rattled bcc cell of 2·repeat³ atoms (or 2·r1·r2·r3 for a triple) with random species
    among ELEMENTS."""
    rng = np.random.default_rng(seed)
    base = Atoms("H2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * a, pbc=True)
    atoms = base.repeat((repeat,) * 3 if isinstance(repeat, int) else tuple(repeat))
    atoms.set_chemical_symbols(rng.choice(ELEMENTS, size=len(atoms)).tolist())
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


SYSTEMS = {"molecule27": None, "bcc54": 3, "bcc128": 4, "bcc432": 6, "bcc1024": 8, "bcc8192": 16}


def system(name: str, molecule_path: str | None = None) -> Atoms:
    """One of SYSTEMS: the 27-atom molecule or a bcc cell of 2·r³ atoms."""
    return molecule(molecule_path) if name == "molecule27" else bcc_cell(SYSTEMS[name])


def copies(atoms: Atoms, n: int, seed: int = 1) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.01, size=a.positions.shape)
        out.append(a)
    return out


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of fn() in seconds after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_mace(channels: int, max_rank: int, dtype: str, cutoff: float, avg_num_neighbors: float):
    """MACE at a width and rank matched to ICTP (benchmarking.md): ScaleShiftMACE, 8 Bessel, p = 5,
    l_max = 3, ν = 3, 2 layers, radial MLP [64, 64, 64], hidden irreps C x (0e + 1o + 2e …)."""
    import mace  # noqa: F401  (first: it lets e3nn load its constants under torch >= 2.6)
    import torch
    from e3nn import o3
    from mace import modules

    irreps = " + ".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(max_rank + 1))
    torch_dtype = getattr(torch, dtype)
    model = modules.ScaleShiftMACE(
        r_max=cutoff,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2,
        num_elements=len(ELEMENTS),
        hidden_irreps=o3.Irreps(irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(len(ELEMENTS)),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=[1, 6, 7, 8],
        correlation=3,
        gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64],
        use_reduced_cg=False,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    return model.to(torch_dtype)


def mace_batch(structures: list[Atoms], cutoff: float, dtype: str):
    import torch
    from mace import data, tools
    from mace.tools import torch_geometric

    torch_dtype = getattr(torch, dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)  # MACE builds its data in the default dtype (benchmark process only)
    try:
        table = tools.AtomicNumberTable([1, 6, 7, 8])
        items = [
            data.AtomicData.from_config(data.config_from_atoms(a), z_table=table, cutoff=cutoff) for a in structures
        ]
        loader = torch_geometric.dataloader.DataLoader(items, batch_size=len(items), shuffle=False)
        batch = next(iter(loader))
    finally:
        torch.set_default_dtype(previous)
    return batch.to_dict()
