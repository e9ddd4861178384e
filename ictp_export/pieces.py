"""The bounded-memory evaluation in compiled pieces (see :mod:`.compiled`'s docstring for their
signatures): the modules that are traced, their example inputs and dynamic sizes, and
:class:`CompiledChunks`, the chunk loop of :class:`ictp_model.model.bounded.BoundedEvaluation`
running the compiled steps.

Every piece takes flat tensors (an AOTInductor model's inputs are a flat list): a layer's input
blocks first, then the arguments of :class:`ChunkStep`, sizes as the *lengths* of tensors.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ictp_model.model.bounded import BoundedEvaluation, ChunkStep
from ictp_model.model.network import ICTPNetwork
from ictp_model.tensor.blocks import block_dim

from .lammps_model import OUTPUTS, edge_vectors, interface_outputs, layer_edge_counts


class StepUpdate(nn.Module):
    """update_t: (h blocks..., species, vectors, edge_index, receivers (R,)) -> output blocks."""

    def __init__(self, step: ChunkStep, num_inputs: int):
        super().__init__()
        self.step, self.num_inputs = step, num_inputs

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        k = self.num_inputs
        species, vectors, edge_index, receivers = args[k : k + 4]
        return tuple(self.step.update(list(args[:k]), species, vectors, edge_index, receivers.shape[0]))


class StepBackward(nn.Module):
    """backward_t: (h blocks..., species, vectors, edge_index, site_weights, adjoint blocks...) ->
    (site, ∂L/∂vectors, ∂L/∂h blocks...)."""

    def __init__(self, step: ChunkStep, num_inputs: int):
        super().__init__()
        self.step, self.num_inputs = step, num_inputs

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        k = self.num_inputs
        species, vectors, edge_index, site_weights = args[k : k + 4]
        site, dv, dh = self.step.backward(
            list(args[:k]), species, vectors, edge_index, site_weights, list(args[k + 4 :])
        )
        return (site, dv, *dh)


class EdgeVectors(nn.Module):
    """vectors: (positions, edge_index, shifts) -> r_j - r_i + shift in the model's dtype."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, positions: Tensor, edge_index: Tensor, shifts: Tensor) -> Tensor:
        return edge_vectors(positions, edge_index, shifts, self.dtype)


class Outputs(nn.Module):
    """outputs: (node_energy, ∂E/∂vectors, vectors, edge_index, positions) -> the five outputs."""

    def forward(
        self, node_energy: Tensor, gradients: Tensor, vectors: Tensor, edge_index: Tensor, positions: Tensor
    ) -> tuple[Tensor, ...]:
        out = interface_outputs(node_energy, gradients, vectors, edge_index, positions.shape[0], True)
        return tuple(out[k] for k in OUTPUTS)


def piece_programs(network: ICTPNetwork, example: tuple, device: str) -> dict[str, tuple]:
    """{name: (module, example args, dynamic dims per arg)} for every piece, traced on the chunks
    of ``example`` (:func:`.compiled.example_inputs`) that are whole layers.

    Dynamic: atoms/nodes, edges and receivers (each size named per piece); channels and block
    dimensions are fixed."""
    from torch.export import Dim

    positions, species, edge_index, shifts, receivers = example
    gen = torch.Generator().manual_seed(0)
    dtype = network.embedding.dtype
    vectors = edge_vectors(positions, edge_index, shifts, dtype)
    num_nodes, channels, storage = positions.shape[0], network.config.channels, network.config.storage
    layers = len(network.layers)
    edge_counts = layer_edge_counts(edge_index, receivers)

    def blocks(rows: int, t: int) -> list[Tensor]:  # random blocks of layer t's output
        dims = [block_dim(l, storage) for l, _ in network.layers[t].out_blocks]
        return [torch.randn(rows, channels, d, generator=gen, dtype=dtype) for d in dims]

    programs: dict[str, tuple] = {}
    steps = BoundedEvaluation(network).steps
    for t in range(layers):
        r, e = receivers[t], edge_counts[t]
        h = blocks(num_nodes, t - 1) if t > 0 else []
        nodes, edges, recv = Dim(f"nodes_{t}", min=1), Dim(f"edges_{t}", min=0), Dim(f"receivers_{t}", min=1)
        common = (species, vectors[:e].contiguous(), edge_index[:, :e].contiguous())
        common_dims = ({0: nodes}, {0: edges}, {1: edges})
        h_dims = tuple({0: nodes} for _ in h)
        if t < layers - 1:
            size = torch.zeros(r, dtype=torch.float32)
            programs[f"update_{t}"] = (
                StepUpdate(steps[t], len(h)),
                (*h, *common, size),
                (*h_dims, *common_dims, {0: recv}),
            )
        adjoint = blocks(r, t) if t < layers - 1 else []
        weights = (torch.arange(r) < receivers[-1]).to(dtype)
        programs[f"backward_{t}"] = (
            StepBackward(steps[t], len(h)),
            (*h, *common, weights, *adjoint),
            (*h_dims, *common_dims, {0: recv}, *({0: recv} for _ in adjoint)),
        )
    atoms, edges, local = Dim("atoms", min=1), Dim("edges", min=0), Dim("local_atoms", min=1)
    programs["vectors"] = (EdgeVectors(dtype), (positions, edge_index, shifts), ({0: atoms}, {1: edges}, {0: edges}))
    energies = torch.randn(receivers[-1], generator=gen, dtype=dtype)
    gradients = torch.randn(vectors.shape, generator=gen, dtype=dtype)
    programs["outputs"] = (
        Outputs(),
        (energies, gradients, vectors, edge_index, positions),
        ({0: local}, {0: edges}, {0: edges}, {1: edges}, {0: atoms}),
    )
    return {name: (module, tuple(x.to(device) for x in args), dims) for name, (module, args, dims) in programs.items()}


class CompiledChunks(BoundedEvaluation):
    """BoundedEvaluation's chunk loop over the compiled steps of a package (no network).

    ``load(name)`` returns the callable of one of the package's models."""

    def __init__(self, load: Callable, num_layers: int, bytes_per_edge: float, default_memory_mb: float):
        nn.Module.__init__(self)  # (not BoundedEvaluation's: there is no network, only its steps)
        self.num_layers = num_layers
        self.bytes_per_edge = bytes_per_edge
        self.default_memory_mb = default_memory_mb
        self.updates = [load(f"update_{t}") for t in range(num_layers - 1)]
        self.backwards = [load(f"backward_{t}") for t in range(num_layers)]

    def _plain(self, species, edge_index, vectors, receivers):
        raise NotImplementedError("CompiledChunks only runs the chunk loop (chunked); the plain path is the package")

    def _update(
        self, t: int, h: list[Tensor], species: Tensor, vectors: Tensor, edge_index: Tensor, num_receivers: int
    ) -> list[Tensor]:
        size = torch.empty(num_receivers, dtype=torch.float32, device=vectors.device)
        return list(self.updates[t](*h, species, vectors, edge_index, size))

    def _backward(
        self,
        t: int,
        h: list[Tensor],
        species: Tensor,
        vectors: Tensor,
        edge_index: Tensor,
        site_weights: Tensor,
        adjoint: list[Tensor],
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        out = self.backwards[t](*h, species, vectors, edge_index, site_weights, *adjoint)
        return out[0], out[1], list(out[2:])
