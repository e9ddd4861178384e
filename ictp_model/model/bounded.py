"""Per-atom energies and edge gradients in bounded memory: the evaluation path for large systems.

The plain path (network forward, then autograd) keeps every per-edge, per-channel, per-path
intermediate of every layer for the force pass, E × C × P × d floats.  Here only each layer's node
features h^(t) are kept (N × C × d per layer), and ∂E/∂r_ij is formed layer by layer, backward,
over chunks of receiving atoms:

    forward   h^(t) = layer_t(h^(t-1), edges), chunk by chunk, without autograd
    backward  for t = T-1 … 0 and each chunk of receivers: recompute that chunk of layer t with
              autograd on and differentiate
                  L = s · Σ_chunk readout_t(h^(t)) + Σ_chunk ⟨h^(t), λ^(t)⟩
              with respect to its edge vectors (added to g) and its senders' h^(t-1) (added to
              λ^(t-1)),

where λ^(t) = ∂E/∂h^(t) through the layers after t.  Summed over layers and chunks this is exactly
the plain path's g_ij = ∂E/∂r_ij (only the order of floating-point sums differs), so forces and
virials follow from :mod:`.potential` unchanged.  Peak memory is the node features plus one
chunk's working set, which the memory budget bounds.  Training keeps the plain path (its loss
needs the second derivatives through the forces).

TorchScript-compatible: the LAMMPS export scripts :class:`BoundedEvaluation`.
"""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .network import ICTPNetwork

#: working-memory budget per evaluation when none is given (MiB): small systems fit in one chunk
DEFAULT_MEMORY_MB = 1024.0


def bytes_per_edge(network: ICTPNetwork) -> float:
    """The working memory one edge of the costliest layer takes when it is recomputed with
    autograd: its messages, their radial weights and the coupled harmonics (forward and the
    backward's copies).  Calibrated on the paper-default model, where a chunk's measured peak is
    within ~10 % of this (benchmarks/lammps_speed.py)."""
    size = 8 if network.embedding.dtype == torch.float64 else 4
    channels = int(network.config.channels)
    worst = 0.0
    for layer in network.layers:
        conv = layer.conv
        floats = sum(channels * g.d_a + g.d_a * g.width for g in conv.groups)  # gathered h, coupled harmonics
        floats += sum(4 * channels * p * d + channels * p for p, d in zip(conv.block_paths, conv.block_dims))
        worst = max(worst, float(floats))
    return size * worst


class ChunkStep(nn.Module):
    """Layer t on one chunk of receivers: the unit the bounded evaluation loops over, and what the
    compiled export compiles, update and backward apart, for every layer (:mod:`ictp_export.pieces`).

    A chunk is a local graph: its R receivers first, then the other atoms its edges hear; edges
    centred on the receivers, in local indices.  Shapes: h the layer's input blocks (N_c, C, d)
    (ignored by layer 0, whose input is the element embedding), species (N_c,), vectors (E_c, 3),
    edge_index (2, E_c).
    """

    def __init__(self, network: ICTPNetwork, t: int):
        super().__init__()
        self.network = network  # shared with the evaluation that holds this step
        self.layer = network.layers[t]
        self.readout = network.readouts[t]
        self.first = t == 0
        self.last = t == len(network.layers) - 1
        self.scalar = network.scalar_index[t]

    def update(
        self, h: list[Tensor], species: Tensor, vectors: Tensor, edge_index: Tensor, num_receivers: int
    ) -> list[Tensor]:
        """The layer's output blocks for the R receivers (R, C, d), without autograd."""
        harmonics, radial = self._edge_features(vectors)
        return self.layer(self._inputs(h, species), species, harmonics, radial, edge_index, num_receivers)

    def backward(
        self,
        h: list[Tensor],
        species: Tensor,
        vectors: Tensor,
        edge_index: Tensor,
        site_weights: Tensor,
        adjoint: list[Tensor],
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The receivers' site energies from this layer (R,), and the derivatives of

            L = Σ_r site_weights[r] · site[r] + Σ_k ⟨out_k, adjoint_k⟩

        with respect to the vectors (E_c, 3) and (layer t > 0) the input blocks h (N_c, C, d).
        site_weights (R,) is 1 for the receivers whose energy counts and 0 for the others; adjoint
        the blocks of λ^(t+1) = ∂E/∂h^(t+1) at the receivers (empty for the last layer).  The last
        layer's sites include the element offsets (E0 + shift)."""
        num_receivers = site_weights.shape[0]
        v = vectors.detach().requires_grad_(True)
        inputs = [x.detach().requires_grad_(True) for x in h] if not self.first else []
        harmonics, radial = self._edge_features(v)
        out = self.layer(self._inputs(inputs, species), species, harmonics, radial, edge_index, num_receivers)
        net = self.network
        site = net.scale * self.readout(out[self.scalar].squeeze(-1))
        if self.last:
            site = site + net.site_offsets(site.dtype).index_select(0, species[:num_receivers])
        objective = (site * site_weights).sum()
        for k in range(len(adjoint)):
            objective = objective + (out[k] * adjoint[k]).sum()
        grads = torch.autograd.grad([objective], [v] + inputs, allow_unused=True)
        dv = grads[0]
        dh: list[Tensor] = []
        for k in range(len(inputs)):
            g = grads[k + 1]
            dh.append(torch.zeros_like(inputs[k]) if g is None else g)
        return site.detach(), torch.zeros_like(vectors) if dv is None else dv, dh

    def _inputs(self, h: list[Tensor], species: Tensor) -> list[Tensor]:
        return [self.network.embed(species)] if self.first else h

    def _edge_features(self, vectors: Tensor) -> tuple[Tensor, Tensor]:
        features = self.network.edge_features(vectors)
        return features[0], features[1]


class BoundedEvaluation(nn.Module):
    """(species, edge_index, vectors[, receivers]) -> (per-atom energies, g = ∂E/∂vectors) with at
    most ``max_edges`` edges per chunk.

    Same arguments and ordering rules as :meth:`ICTPNetwork.forward`: edges sorted by centre, and
    with ``receivers`` layer t updates the first receivers[t] atoms.  Shapes: species (N,),
    edge_index (2, E), vectors (E, 3) -> (receivers[-1] or N,), (E, 3).

    The chunk loop calls each layer only through :meth:`_update` and :meth:`_backward` (one
    :class:`ChunkStep` per layer); the compiled export's evaluation replaces those two with the
    compiled steps and keeps the loop.
    """

    def __init__(self, network: ICTPNetwork):
        super().__init__()
        self.network = network
        self.steps = nn.ModuleList([ChunkStep(network, t) for t in range(len(network.layers))])
        self.num_layers = len(network.layers)
        self.bytes_per_edge = bytes_per_edge(network)
        self.default_memory_mb = DEFAULT_MEMORY_MB

    def chunk_edges(self, memory_mb: float) -> int:
        """The edges per chunk that fit in memory_mb MiB (<= 0: DEFAULT_MEMORY_MB)."""
        budget = memory_mb if memory_mb > 0 else self.default_memory_mb
        return max(1, int(math.floor(budget * 1048576.0 / self.bytes_per_edge)))

    def forward(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        receivers: Optional[list[int]],
        max_edges: int,
    ) -> tuple[Tensor, Tensor]:
        if edge_index.shape[1] <= max_edges:  # everything in one chunk: the plain path, as fast
            return self._plain(species, edge_index, vectors, receivers)
        return self.chunked(species, edge_index, vectors, receivers, max_edges)

    def chunked(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        receivers: Optional[list[int]],
        max_edges: int,
    ) -> tuple[Tensor, Tensor]:
        """The chunk loop, whatever the number of edges."""
        centres = edge_index[0]
        if bool((centres[1:] < centres[:-1]).any()):  # chunks need the edges sorted by centre
            order = torch.argsort(centres, stable=True)
            energy, g = self._sorted(species, edge_index[:, order], vectors[order], receivers, max_edges)
            return energy, torch.zeros_like(g).index_copy(0, order, g)
        return self._sorted(species, edge_index, vectors, receivers, max_edges)

    def _sorted(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        receivers: Optional[list[int]],
        max_edges: int,
    ) -> tuple[Tensor, Tensor]:
        counts: list[int] = [species.shape[0]] * self.num_layers if receivers is None else receivers
        offsets = [_edge_offsets(edge_index, n) for n in counts]  # per layer (R_t + 1,), on CPU
        chunks = [_chunks(o, max_edges) for o in offsets]
        features = self._features(species, edge_index, vectors, chunks)
        return self._energy_and_gradients(species, edge_index, vectors, counts, chunks, features)

    def _plain(
        self, species: Tensor, edge_index: Tensor, vectors: Tensor, receivers: Optional[list[int]]
    ) -> tuple[Tensor, Tensor]:
        vectors = vectors.detach().requires_grad_(True)
        node_energy = self.network(species, edge_index, vectors, receivers)
        grads = torch.autograd.grad([node_energy.sum()], [vectors], allow_unused=True)
        g = grads[0]
        return node_energy.detach(), torch.zeros_like(vectors) if g is None else g

    def _update(
        self, t: int, h: list[Tensor], species: Tensor, vectors: Tensor, edge_index: Tensor, num_receivers: int
    ) -> list[Tensor]:
        """ChunkStep.update of layer t."""
        out: list[Tensor] = []
        # TorchScript cannot index a ModuleList by a variable: scan for the wanted step (T is 2 or 3)
        for i, step in enumerate(self.steps):
            if i == t:
                out = step.update(h, species, vectors, edge_index, num_receivers)
        return out

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
        """ChunkStep.backward of layer t."""
        out: tuple[Tensor, Tensor, list[Tensor]] = (site_weights, vectors, h)
        for i, step in enumerate(self.steps):
            if i == t:
                out = step.backward(h, species, vectors, edge_index, site_weights, adjoint)
        return out

    def _features(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        chunks: list[list[list[int]]],
    ) -> list[list[Tensor]]:
        """The inputs of every layer, without autograd: [h^(0), …, h^(T-1)], h^(0) empty (layer 0
        embeds the elements itself) and h^(t+1) blocks (R_t, C, d).  The last layer's output is
        not needed: the backward recomputes each layer from its input."""
        num_nodes = species.shape[0]
        with torch.no_grad():
            h: list[Tensor] = []
            features: list[list[Tensor]] = [h]
            for t in range(self.num_layers - 1):
                outputs: list[list[Tensor]] = []
                for chunk in chunks[t]:
                    nodes, local_edges = _local_graph(edge_index, chunk, num_nodes)
                    h_local = [x.index_select(0, nodes) for x in h]
                    out = self._update(
                        t, h_local, species.index_select(0, nodes), vectors[chunk[2] : chunk[3]], local_edges,
                        chunk[1] - chunk[0],
                    )  # fmt: skip
                    outputs.append(out)
                h = [torch.cat([o[k] for o in outputs], dim=0) for k in range(len(outputs[0]))]
                features.append(h)
        return features

    def _energy_and_gradients(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        counts: list[int],
        chunks: list[list[list[int]]],
        features: list[list[Tensor]],
    ) -> tuple[Tensor, Tensor]:
        num_nodes, num_out = species.shape[0], counts[-1]
        energy = torch.zeros(num_out, dtype=vectors.dtype, device=vectors.device)
        g = torch.zeros_like(vectors)
        adjoint: list[Tensor] = []  # λ^(t+1) = ∂E/∂h^(t+1) through the later layers; none after the last
        for t in range(self.num_layers - 1, -1, -1):
            inputs = features[t]
            previous = [torch.zeros_like(x) for x in inputs]
            for chunk in chunks[t]:
                r0, r1, e0, e1 = chunk[0], chunk[1], chunk[2], chunk[3]
                nodes, local_edges = _local_graph(edge_index, chunk, num_nodes)
                n_out = max(0, min(r1, num_out) - r0)  # receivers whose energies count
                weights = (torch.arange(r1 - r0, device=vectors.device) < n_out).to(vectors.dtype)
                site, dv, dh = self._backward(
                    t, [x.index_select(0, nodes) for x in inputs], species.index_select(0, nodes), vectors[e0:e1],
                    local_edges, weights, [x[r0:r1] for x in adjoint],
                )  # fmt: skip
                energy[r0 : r0 + n_out] += site[:n_out]
                g[e0:e1] += dv
                for k in range(len(previous)):
                    previous[k].index_add_(0, nodes, dh[k])
            adjoint = previous
        return energy, g


def _edge_offsets(edge_index: Tensor, num_receivers: int) -> Tensor:
    """offsets[r] = the first edge centred on receiver r; offsets[R] = the layer's edge count."""
    bounds = torch.arange(num_receivers + 1, dtype=edge_index.dtype, device=edge_index.device)
    return torch.searchsorted(edge_index[0].contiguous(), bounds).cpu()


def _chunks(offsets: Tensor, max_edges: int) -> list[list[int]]:
    """Consecutive receiver ranges [r0, r1) whose edges [e0, e1) number at most max_edges (or one
    receiver, if it alone has more).  offsets: (R + 1,) on CPU -> [[r0, r1, e0, e1], ...]."""
    num_receivers = offsets.shape[0] - 1
    out: list[list[int]] = []
    r0 = 0
    while r0 < num_receivers:
        e0 = int(offsets[r0])
        limit = torch.tensor([e0 + max_edges], dtype=offsets.dtype)
        r1 = int(torch.searchsorted(offsets, limit, right=True)[0]) - 1
        r1 = min(max(r1, r0 + 1), num_receivers)
        out.append([r0, r1, e0, int(offsets[r1])])
        r0 = r1
    return out


def _local_graph(edge_index: Tensor, chunk: list[int], num_nodes: int) -> tuple[Tensor, Tensor]:
    """The atoms a chunk needs, its receivers first, and its edges in those local indices."""
    r0, r1, e0, e1 = chunk[0], chunk[1], chunk[2], chunk[3]
    device = edge_index.device
    senders = edge_index[1, e0:e1]
    needed = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    needed[senders] = True
    needed[r0:r1] = False
    receivers = torch.arange(r0, r1, dtype=edge_index.dtype, device=device)
    nodes = torch.cat([receivers, torch.nonzero(needed).flatten()])
    local = torch.full((num_nodes,), -1, dtype=edge_index.dtype, device=device)
    local[nodes] = torch.arange(nodes.shape[0], dtype=edge_index.dtype, device=device)
    return nodes, torch.stack([edge_index[0, e0:e1] - r0, local.index_select(0, senders)])
