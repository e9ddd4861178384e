"""The compiled export: an AOTInductor package (``.pt2``) of the LAMMPS interface.

Same computation as :mod:`.lammps_model` (the plain path: energies, forces, virials and per-atom
virials in one call), compiled ahead of time for one device and dtype.  Differences a caller sees:

    inputs   positions (N, 3) float64, species (N,) int64, edge_index (2, E) int64, shifts (E, 3)
             float64, counted (N,) float64: 1 for the atoms whose energies are summed (LAMMPS'
             local atoms, which come first), 0 for the others.
    outputs  energy (), node_energy (N,) (the caller keeps the counted ones), forces (N, 3),
             virial (3, 3), atom_virial (N, 3, 3), all float64, always all five.
    metadata the TorchScript export's attributes as strings (format_version, cutoff, num_layers,
             elements as JSON, dtype, config), plus ``interface = "ictp-aoti"``.

Every layer updates every atom: the per-layer receiver counts of the TorchScript export (which
skip ghosts whose features no counted energy needs) are left out, because AOTInductor
(torch 2.13) compiled the graph sliced by them to wrong numbers, while the graph of the plain
path compiles exactly.  The counted energies, and with them forces and virials, are the same:
an atom's energy depends only on atoms within T·r_c, all of whose edges the pair style sends.
Atom and edge counts are dynamic dimensions: one package serves every neighbour list.

Not compiled: the memory-bounded evaluation (:mod:`ictp_model.model.bounded`).  Its chunks are a
loop whose length depends on the data, which an ahead-of-time graph cannot hold; a system beyond
the memory of the plain path needs the ``.pt`` export.

Route (torch 2.13): ``make_fx`` with symbolic shapes traces the forward *with* its
``torch.autograd.grad`` (the backward becomes part of the graph); its constants become buffers;
``torch.export`` with dynamic atom and edge counts; ``aoti_compile_and_package``.  Compiling needs
a C++ compiler: :class:`CompileError` says what failed and that the ``.pt`` export works without one.
"""

import copy
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn

from ictp_model.data.graph import AtomicGraph
from ictp_model.files import atomic_write
from ictp_model.model.config import ModelConfig
from ictp_model.model.network import ICTPNetwork, element_table
from ictp_model.model.potential import image_offsets, species_index, stress_from_virial

from .lammps_model import FORMAT_VERSION, interface_attributes, interface_outputs

INTERFACE = "ictp-aoti"
OUTPUTS = ("energy", "node_energy", "forces", "virial", "atom_virial")


class CompileError(RuntimeError):
    """Compiling the ``.pt2`` failed (no compiler, an unsupported operation, …)."""


class CompiledInterface(nn.Module):
    """The function the package holds (see the module docstring)."""

    def __init__(self, network: ICTPNetwork):
        super().__init__()
        self.network = network

    def forward(
        self, positions: Tensor, species: Tensor, edge_index: Tensor, shifts: Tensor, counted: Tensor
    ) -> tuple[Tensor, ...]:
        dtype = self.network.embedding.dtype
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts
        vectors = vectors.to(dtype).requires_grad_(True)
        node_energy = self.network(species, edge_index, vectors)
        gradients = torch.autograd.grad([(node_energy * counted.to(dtype)).sum()], [vectors])[0]
        out = interface_outputs(node_energy, gradients, vectors.detach(), edge_index, positions.shape[0], True)
        out["energy"] = (out["node_energy"] * counted).sum()
        return tuple(out[k] for k in OUTPUTS)


def counted_atoms(num_atoms: int, num_counted: int, device: Union[str, torch.device] = "cpu") -> Tensor:
    """The package's ``counted`` input: 1 for the first num_counted atoms, 0 for the rest."""
    counted = torch.zeros(num_atoms, dtype=torch.float64, device=device)
    counted[:num_counted] = 1.0
    return counted


def example_inputs(network: ICTPNetwork, num_atoms: int = 23, seed: int = 0) -> tuple:
    """A layered graph as the pair style builds it: a random cluster whose atoms are ordered by
    level, with edges only where a layer needs them (every count different, so that no two
    dynamic sizes are traced as equal).

    Returns (positions, species, edge_index, shifts, receivers); receivers[t] atoms are updated
    by layer t in the TorchScript export, receivers[-1] are the counted (local) atoms."""
    gen = torch.Generator().manual_seed(seed)
    cutoff, layers = float(network.config.cutoff), len(network.layers)
    positions = torch.rand(num_atoms, 3, generator=gen, dtype=torch.float64) * (1.6 * cutoff)
    species = torch.randint(0, len(network.config.elements), (num_atoms,), generator=gen)
    receivers = [num_atoms - 3 - 4 * t for t in range(layers)]  # layer t updates the first receivers[t]
    centre, sender = torch.nonzero(torch.cdist(positions, positions) < cutoff, as_tuple=True)
    keep = (centre != sender) & (centre < receivers[0])
    for t in range(1, layers):  # an edge of layer t must hear an atom that layer t-1 updated
        keep &= (centre >= receivers[t]) | (sender < receivers[t - 1])
    centre, sender = centre[keep], sender[keep]
    order = torch.argsort(centre, stable=True)
    edge_index = torch.stack([centre[order], sender[order]])
    shifts = torch.zeros(edge_index.shape[1], 3, dtype=torch.float64)
    if edge_index.shape[1] in (num_atoms, 2, 3) or num_atoms in (2, 3):
        raise ValueError(f"example graph with {num_atoms} atoms and {edge_index.shape[1]} edges; use another seed")
    return positions, species, edge_index, shifts, receivers


def compile_network(network: ICTPNetwork, out: Union[str, Path], device: str = "cpu") -> dict:
    """Compile ``network`` into the package ``out`` (written atomically); returns the seconds of
    each stage.  Raises CompileError on failure."""
    network = copy.deepcopy(network).to(device).eval()  # (the caller's model keeps its gradients)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    positions, species, edge_index, shifts, receivers = example_inputs(network)
    counted = counted_atoms(positions.shape[0], receivers[-1])
    args = tuple(x.to(device) for x in (positions, species, edge_index, shifts, counted))
    times: dict = {}
    try:
        program = _export(CompiledInterface(network), args, times)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            package = torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(Path(folder) / "model.pt2"),
                inductor_configs={"aot_inductor.metadata": {**metadata(network), "device": str(device)}},
            )
            atomic_write(out, lambda tmp: shutil.copyfile(package, tmp))
        times["compile"] = time.perf_counter() - start
    except Exception as error:  # what fails here is the toolchain or an op, not the model
        raise CompileError(
            f"compiling the .pt2 failed ({type(error).__name__}: {str(error).strip().splitlines()[0][:300]}). "
            "It needs a C++ compiler (and for CUDA, nvcc) that torch's inductor can call. "
            "The TorchScript export works everywhere: ictp export --out model-lammps.pt"
        ) from error
    return times


def _export(module: nn.Module, args: tuple, times: dict) -> torch.export.ExportedProgram:
    from torch.export import Dim, export
    from torch.fx.experimental.proxy_tensor import make_fx

    start = time.perf_counter()
    # (example_inputs keeps every count apart: sizes equal when traced would become one symbol)
    graph = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*args)
    for node in graph.graph.nodes:  # make_fx keeps constants as plain attributes; export wants buffers
        if node.op == "get_attr" and isinstance(getattr(graph, node.target), Tensor):
            if node.target not in dict(graph.named_buffers()):
                value = getattr(graph, node.target)
                delattr(graph, node.target)
                graph.register_buffer(node.target, value)
    times["trace"] = time.perf_counter() - start
    start = time.perf_counter()
    atoms, edges = Dim("atoms", min=1), Dim("edges", min=0)  # a lone atom; an atom without neighbours
    dynamic = ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, {0: atoms})
    program = export(graph, args, dynamic_shapes=dynamic, strict=False)
    times["export"] = time.perf_counter() - start
    return program


def metadata(network: ICTPNetwork) -> dict[str, str]:
    """The TorchScript export's attributes as strings (numbers and lists as JSON)."""
    attributes = interface_attributes(network.config)
    return {"interface": INTERFACE, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in attributes.items()}}


class CompiledModel:
    """A loaded ``.pt2``: its metadata and a call with the TorchScript export's arguments.

    ``model(positions, species, edge_index, shifts, receivers, compute_virial)`` -> the same dict
    as :class:`.lammps_model.LAMMPSModel` (only receivers[-1], the counted atoms, is used)."""

    def __init__(self, path: Union[str, Path]):
        path = str(path)
        try:
            self.package = torch._inductor.aoti_load_package(path)
        except Exception as error:
            raise ValueError(f"{path}: not a loadable AOTInductor package ({error})") from error
        meta = self.package.get_metadata()
        if meta.get("interface") != INTERFACE:
            raise ValueError(f"{path}: not an ICTP .pt2 (metadata interface={meta.get('interface')!r})")
        if int(meta["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {meta['format_version']}, this ictp reads {FORMAT_VERSION}")
        self.metadata = meta
        self.cutoff = float(meta["cutoff"])
        self.num_layers = int(meta["num_layers"])
        self.elements: list[str] = json.loads(meta["elements"])
        self.dtype = meta["dtype"]
        self.device = torch.device(meta.get("device", "cpu"))
        self.config = ModelConfig.from_dict(json.loads(meta["config"]))
        self.z_to_index = element_table(self.elements)

    def __call__(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        shifts: Tensor,
        receivers: list[int],
        compute_virial: bool = True,
    ) -> dict[str, Tensor]:
        num_atoms, num_counted = positions.shape[0], receivers[-1]
        if num_atoms == 0:  # (a package's atom count is at least 1)
            zeros = torch.zeros(0, dtype=torch.float64, device=positions.device)
            values = [
                zeros.sum(),
                zeros,
                zeros.reshape(0, 3),
                torch.zeros(3, 3, dtype=torch.float64, device=positions.device),
                zeros.reshape(0, 3, 3),
            ]
        else:
            counted = counted_atoms(num_atoms, num_counted, positions.device)
            values = self.package(positions.double(), species, edge_index, shifts.double(), counted)
        out = dict(zip(OUTPUTS, values))
        out["node_energy"] = out["node_energy"][:num_counted]
        if not compute_virial:
            del out["virial"], out["atom_virial"]
        return out

    def properties(self, graph: AtomicGraph, stress: bool = False) -> dict[str, Tensor]:
        """What :func:`ictp_model.model.compute_properties` returns with forces (and stress), for a
        (batched) graph: node_energy, energy (G,), forces, and with stress virial and stress (G, 3, 3)."""
        species = species_index(self.z_to_index, graph.numbers)
        positions = graph.positions.double()
        shifts = image_offsets(graph.edge_index, graph.shifts.double(), graph.cell.double(), graph.batch)
        counted = torch.ones(graph.num_nodes, dtype=torch.float64, device=positions.device)
        values = dict(zip(OUTPUTS, self.package(positions, species, graph.edge_index, shifts, counted)))
        node_energy = values["node_energy"]
        energy = torch.zeros(graph.num_graphs, dtype=torch.float64, device=positions.device)
        out = {"node_energy": node_energy, "energy": energy.index_add(0, graph.batch, node_energy)}
        out["forces"] = values["forces"]
        if stress:
            virial = torch.zeros(graph.num_graphs, 3, 3, dtype=torch.float64, device=positions.device)
            virial = virial.index_add(0, graph.batch, values["atom_virial"])
            out["virial"] = virial
            out["stress"] = stress_from_virial(virial, graph.cell)
        return out
