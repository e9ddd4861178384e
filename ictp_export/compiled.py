"""The compiled export: an AOTInductor package (``.pt2``) of the LAMMPS interface.

Same computation as :mod:`.lammps_model` (the plain path: energies, forces, virials and per-atom
virials in one call), compiled ahead of time for one device and dtype.  Differences a caller sees:

    inputs   positions (N, 3) float64, species (N,) int64, edge_index (2, E) int64, shifts (E, 3)
             float64, then the per-layer counts as the *lengths* of 2T - 1 tensors (values
             unused; :func:`layer_sizes`): T of lengths receivers[0..T-1] (the atoms layer t
             updates, as in the TorchScript export; receivers[-1] = the local atoms, at least
             1), then T - 1 of lengths edge_counts[1..T-1] (the edges centred on layer t's
             receivers: a prefix of the edges, which are sorted by centre).
    outputs  energy (), node_energy (receivers[-1],), forces (N, 3), virial (3, 3),
             atom_virial (N, 3, 3), all float64, always all five.
    metadata the TorchScript export's attributes as strings (format_version, cutoff, num_layers,
             elements as JSON, dtype, config), plus ``interface = "ictp-aoti"`` and
             ``package_version`` (:data:`PACKAGE_VERSION`).

Counts as lengths rather than values: a value would be data-dependent, which an ahead-of-time
graph cannot slice by.  Layer t updates only its receivers, as in the TorchScript export, so
ghost atoms that no local energy needs are skipped.  The element-dependent matrices take
species_matmul's ungrouped form (:mod:`ictp_model.nn.linear`), the one AOTInductor (torch 2.13)
compiles exactly.  Atom, edge and layer counts are dynamic dimensions: one package serves every
neighbour list.

The memory-bounded evaluation (:mod:`ictp_model.model.bounded`) is compiled by pieces: its
chunk loop has a data-dependent length, which an ahead-of-time graph cannot hold, so the package
holds, besides ``model`` (the plain path above), one compiled :class:`ChunkStep` per layer and
direction, and the caller runs the loop (:class:`CompiledChunks` here, the same loop in
pair_style ictp):

    update_t    (t < T-1)  h blocks (N_c, C, d) [none for t = 0], species (N_c,), vectors (E_c, 3),
                           edge_index (2, E_c), a tensor of length R  ->  layer t's output blocks (R, C, d)
    backward_t             h blocks, species, vectors, edge_index, site_weights (R,), adjoint blocks
                           (R, C, d) [none for t = T-1]  ->  site (R,), ∂L/∂vectors (E_c, 3), ∂L/∂h
    vectors                positions (N, 3), edge_index (2, E), shifts (E, 3)  ->  vectors (E, 3)
    outputs                node_energy (n,), ∂E/∂vectors (E, 3), vectors, edge_index, positions  ->
                           the five outputs above

(vectors and gradients in the model's dtype; see :class:`ChunkStep` for L).  ``model``'s metadata
adds ``bytes_per_edge`` (the working memory per edge of a chunk, which sets the chunk size) and
``default_memory_mb`` (the budget when none is given), as the TorchScript export's attributes.

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
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch._inductor.package import load_package, package_aoti

from ictp_model.data.graph import AtomicGraph
from ictp_model.device import INDUCTOR_OPTIONS
from ictp_model.files import atomic_write
from ictp_model.kernels import edge_kernel_available
from ictp_model.model.bounded import DEFAULT_MEMORY_MB, bytes_per_edge
from ictp_model.model.config import ModelConfig
from ictp_model.model.network import ICTPNetwork, element_table
from ictp_model.model.potential import image_offsets, species_index, stress_from_virial
from ictp_model.nn.product_basis import SourceProduct
from ictp_model.tensor.blocks import block_dim

from .inductor_fixes import outer_loops_stay_parallel
from .lammps_model import (
    FORMAT_VERSION,
    OUTPUTS,
    edge_vectors,
    interface_attributes,
    interface_outputs,
    layer_edge_counts,
)
from .pieces import CompiledChunks, piece_programs

INTERFACE = "ictp-aoti"
PACKAGE_VERSION = 3  # 3: the bounded evaluation's pieces; 2: per-layer receivers as size inputs; 1: all atoms


class CompileError(RuntimeError):
    """Compiling the ``.pt2`` failed (no compiler, an unsupported operation, …)."""


class CompiledInterface(nn.Module):
    """The function the package holds (see the module docstring)."""

    def __init__(self, network: ICTPNetwork):
        super().__init__()
        self.network = network

    def forward(
        self, positions: Tensor, species: Tensor, edge_index: Tensor, shifts: Tensor, *layer_sizes: Tensor
    ) -> tuple[Tensor, ...]:
        dtype = self.network.embedding.dtype
        layers = len(self.network.layers)
        receivers = [x.shape[0] for x in layer_sizes[:layers]]
        edge_counts = [edge_index.shape[1]] + [x.shape[0] for x in layer_sizes[layers:]]
        vectors = edge_vectors(positions, edge_index, shifts, dtype).requires_grad_(True)
        node_energy = self.network(species, edge_index, vectors, receivers, edge_counts)
        gradients = torch.autograd.grad([node_energy.sum()], [vectors])[0]
        out = interface_outputs(node_energy, gradients, vectors.detach(), edge_index, positions.shape[0], True)
        return tuple(out[k] for k in OUTPUTS)


def layer_sizes(edge_index: Tensor, receivers: list[int]) -> list[Tensor]:
    """The package's size inputs for a layered graph: T tensors of lengths receivers[0..T-1], then
    T-1 of lengths edge_counts[1..T-1] (the edges centred on layer t's receivers; edges sorted by
    centre).  Their lengths, not their values, carry the counts, so the traced graph has no
    data-dependent branch."""
    edge_counts = layer_edge_counts(edge_index, receivers[1:])
    return [torch.zeros(n, dtype=torch.float32, device=edge_index.device) for n in list(receivers) + edge_counts]


def no_local_atoms(num_atoms: int, device: torch.device) -> list[Tensor]:
    """The outputs when no atom's energy counts: zero energy, forces and virials."""
    zeros = torch.zeros(num_atoms, 3, 3, dtype=torch.float64, device=device)
    return [zeros.sum(), zeros[:0, 0, 0], zeros[:, 0], zeros.sum(0), zeros]


def example_inputs(network: ICTPNetwork, num_atoms: int = 23, seed: int = 0) -> tuple:
    """A layered graph as the pair style builds it: a random cluster whose atoms are ordered by
    level, with edges only where a layer needs them (every count different, so that no two
    dynamic sizes are traced as equal).

    Returns (positions, species, edge_index, shifts, receivers); receivers[t] atoms are updated
    by layer t, receivers[-1] are the local atoms whose energies count."""
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


def traceable_example(network: ICTPNetwork) -> tuple:
    """example_inputs whose dynamic sizes (atoms, receivers and edges of every layer) differ from
    each other and from every fixed size (channels, block dimensions): tracing gives equal sizes
    one symbol, which would tie them together in the compiled graph."""
    storage = network.config.storage
    fixed = {1, 2, 3, int(network.config.channels)}
    fixed |= {block_dim(l, storage) for layer in network.layers for l, _ in layer.out_blocks}
    for seed in range(32):
        try:
            example = example_inputs(network, seed=seed)
        except ValueError:
            continue
        edge_index, receivers = example[2], example[4]
        sizes = [example[0].shape[0], edge_index.shape[1], *receivers, *layer_edge_counts(edge_index, receivers[1:])]
        if len(set(sizes)) == len(sizes) and not fixed & set(sizes):
            return example
    raise ValueError("no example graph with distinct sizes found")  # (not seen: 32 seeds)


def compile_network(network: ICTPNetwork, out: Union[str, Path], device: str = "cpu") -> dict:
    """Compile ``network`` into the package ``out`` (written atomically); returns the seconds of
    each stage.  Raises CompileError on failure."""
    network = copy.deepcopy(network).to(device).eval()  # (the caller's model keeps its gradients)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    for module in network.modules():
        if hasattr(module, "grouped_species"):  # the form of species_matmul that AOTInductor compiles exactly
            module.grouped_species = False
        if isinstance(module, SourceProduct):  # compiled, the per-block form is the faster in both dtypes (README)
            module.split_by_block = True
    edge_kernel = network.use_edge_kernel(torch.device(device).type == "cpu")  # (a CPU kernel; inference only)
    example = traceable_example(network)
    positions, species, edge_index, shifts, receivers = example
    args = tuple(x.to(device) for x in (positions, species, edge_index, shifts, *layer_sizes(edge_index, receivers)))
    programs = {"model": (CompiledInterface(network), args, _interface_dims(len(receivers)))}
    programs.update(piece_programs(network, example, device))
    memory = {"bytes_per_edge": json.dumps(bytes_per_edge(network)), "default_memory_mb": json.dumps(DEFAULT_MEMORY_MB)}
    meta = {**metadata(network), "device": str(device), "edge_kernel": json.dumps(edge_kernel), **memory}
    times: dict = {"trace": 0.0, "export": 0.0, "compile": 0.0}
    try:
        with tempfile.TemporaryDirectory() as folder:
            files = {}
            for name, (module, example_args, dims) in programs.items():
                program = _export(module, example_args, dims, times)
                start = time.perf_counter()
                options = {"aot_inductor.package": True, "aot_inductor.metadata": meta, **INDUCTOR_OPTIONS}
                # (as aoti_compile_and_package: the dynamic dims' ranges are checked by export itself)
                with outer_loops_stay_parallel():
                    files[name] = torch._inductor.aot_compile(
                        program.module(check_guards=False), example_args, options=options
                    )
                times["compile"] += time.perf_counter() - start
            package = package_aoti(str(Path(folder) / "model.pt2"), files)
            atomic_write(out, lambda tmp: shutil.copyfile(package, tmp))
    except Exception as error:  # what fails here is the toolchain or an op, not the model
        raise CompileError(
            f"compiling the .pt2 failed ({type(error).__name__}: {str(error).strip().splitlines()[0][:300]}). "
            "It needs a C++ compiler (and for CUDA, nvcc) that torch's inductor can call. "
            "The TorchScript export works everywhere: ictp export --out model-lammps.pt"
        ) from error
    return times


def _interface_dims(layers: int) -> tuple:
    """The dynamic sizes of the plain interface's inputs (``model``)."""
    from torch.export import Dim

    atoms, edges = Dim("atoms", min=1), Dim("edges", min=0)  # a lone atom; an atom without neighbours
    receivers = tuple({0: Dim(f"receivers_{t}", min=1)} for t in range(layers))  # (callers skip 0 locals)
    edge_counts = tuple({0: Dim(f"edges_{t}", min=0)} for t in range(1, layers))
    return ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}) + receivers + edge_counts


def _export(module: nn.Module, args: tuple, dynamic: tuple, times: dict) -> torch.export.ExportedProgram:
    from torch.export import export
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
    times["trace"] += time.perf_counter() - start
    start = time.perf_counter()
    program = export(graph, args, dynamic_shapes=dynamic, strict=False)
    times["export"] += time.perf_counter() - start
    return program


def metadata(network: ICTPNetwork) -> dict[str, str]:
    """The TorchScript export's attributes as strings (numbers and lists as JSON)."""
    attributes = interface_attributes(network.config)
    return {
        "interface": INTERFACE,
        "package_version": str(PACKAGE_VERSION),
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in attributes.items()},
    }


class CompiledModel:
    """A loaded ``.pt2``: its metadata and a call with the TorchScript export's arguments.

    ``model(positions, species, edge_index, shifts, receivers, compute_virial)`` -> the same dict
    as :class:`.lammps_model.LAMMPSModel`, for a graph ordered as the pair style orders it."""

    def __init__(self, path: Union[str, Path]):
        path = str(path)
        kernel = edge_kernel_available()  # a CPU package calls torch.ops.ictp.*: registered before loading
        try:
            self.package = torch._inductor.aoti_load_package(path)
        except Exception as error:
            hint = (
                ""
                if kernel
                else "; if it was compiled for CPU, it calls the ictp edge kernel, which could not be built here"
            )
            raise ValueError(f"{path}: not a loadable AOTInductor package ({error}){hint}") from error
        meta = self.package.get_metadata()
        if meta.get("interface") != INTERFACE:
            raise ValueError(f"{path}: not an ICTP .pt2 (metadata interface={meta.get('interface')!r})")
        if int(meta.get("package_version", 1)) != PACKAGE_VERSION:
            raise ValueError(
                f"{path}: compiled package version {meta.get('package_version', 1)}, this ictp reads "
                f"{PACKAGE_VERSION}; export it again (ictp export --out X.pt2)"
            )
        if int(meta["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {meta['format_version']}, this ictp reads {FORMAT_VERSION}")
        self.metadata = meta
        self.cutoff = float(meta["cutoff"])
        self.num_layers = int(meta["num_layers"])
        self.elements: list[str] = json.loads(meta["elements"])
        self.dtype = meta["dtype"]
        self.device = torch.device(meta.get("device", "cpu"))
        self.config = ModelConfig.from_dict(json.loads(meta["config"]))
        self.z_to_index = element_table(self.elements).to(self.device)
        index = self.device.index if self.device.index is not None else (0 if self.device.type == "cuda" else -1)

        def load(name: str):  # one of the package's models: the bounded evaluation's steps
            return load_package(path, name, device_index=index)

        self.edge_vectors, self.outputs = load("vectors"), load("outputs")
        self.chunks = CompiledChunks(
            load,
            self.num_layers,
            float(meta["bytes_per_edge"]),
            float(meta["default_memory_mb"]),
        )

    def __call__(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        shifts: Tensor,
        receivers: list[int],
        compute_virial: bool = True,
        memory_mb: float = 0.0,
    ) -> dict[str, Tensor]:
        """memory_mb: the working-memory budget as in the TorchScript export (<= 0: its default);
        a graph whose edges do not fit is evaluated in chunks by the compiled steps."""
        positions, species, edge_index, shifts = self._on_device(positions, species, edge_index, shifts)
        out = dict(zip(OUTPUTS, self._evaluate(positions, species, edge_index, shifts, receivers, memory_mb)))
        if not compute_virial:
            del out["virial"], out["atom_virial"]
        return out

    def _evaluate(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        shifts: Tensor,
        receivers: list[int],
        memory_mb: Optional[float],
    ) -> list[Tensor]:
        """The five outputs, plain or in chunks (inputs on the package's device)."""
        if receivers[-1] == 0:  # no local atom, nothing counts (a package's counts are at least 1)
            return no_local_atoms(positions.shape[0], positions.device)
        if memory_mb is None or edge_index.shape[1] <= self.chunks.chunk_edges(memory_mb):
            return self.package(positions, species, edge_index, shifts, *layer_sizes(edge_index, receivers))
        vectors = self.edge_vectors(positions, edge_index, shifts)
        energy, gradients = self.chunks.chunked(
            species, edge_index, vectors, receivers, self.chunks.chunk_edges(memory_mb)
        )
        return self.outputs(energy, gradients, vectors, edge_index, positions)

    def _on_device(self, positions: Tensor, species: Tensor, edge_index: Tensor, shifts: Tensor) -> tuple:
        """The inputs where the package runs (it was compiled for one device), positions in float64."""
        f64 = torch.float64
        return (
            positions.to(self.device, f64),
            species.to(self.device),
            edge_index.to(self.device),
            shifts.to(self.device, f64),
        )

    def properties(
        self, graph: AtomicGraph, stress: bool = False, memory_mb: Optional[float] = None
    ) -> dict[str, Tensor]:
        """What :func:`ictp_model.model.compute_properties` returns with forces (and stress), for a
        (batched) graph: node_energy, energy (G,), forces, and with stress virial and stress (G, 3, 3).
        memory_mb as there: None evaluates all atoms at once, else within that budget (<= 0: the default)."""
        graph = graph.to(self.device)
        species = species_index(self.z_to_index, graph.numbers)
        positions = graph.positions.double()
        shifts = image_offsets(graph.edge_index, graph.shifts.double(), graph.cell.double(), graph.batch)
        receivers = [graph.num_nodes] * self.num_layers  # every atom, every edge
        values = dict(zip(OUTPUTS, self._evaluate(positions, species, graph.edge_index, shifts, receivers, memory_mb)))
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
