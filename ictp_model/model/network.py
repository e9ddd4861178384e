"""The ICTP network: species, edges and edge vectors in, per-atom energies out (docs/math.md §2.1).

Forces and stress are not computed here: :mod:`.potential` differentiates these energies.
The forward pass is TorchScript-compatible; the LAMMPS export scripts it.
"""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ictp_model.nn.convolution import TwoBodyFeatures
from ictp_model.nn.interaction import InteractionLayer
from ictp_model.nn.product_basis import SourceProduct
from ictp_model.nn.radial import BesselBasis, PolynomialEnvelope
from ictp_model.nn.readout import LinearReadout, MLPReadout
from ictp_model.tensor.basis import harmonics_matrix
from ictp_model.tensor.blocks import Block
from ictp_model.tensor.constants import harmonic_constant
from ictp_model.tensor.harmonics import flat_outer_powers, unit_vectors

from .config import ModelConfig


def element_table(elements: list[str]) -> Tensor:
    """Atomic number -> index into ``elements`` (-1: not a model element).  Shape (119,)."""
    from ase.data import atomic_numbers

    table = torch.full((119,), -1, dtype=torch.long)
    for i, symbol in enumerate(elements):
        table[atomic_numbers[symbol]] = i
    return table


def edge_harmonic_scale(l: int, convention: str) -> float:
    """The factor on T_l(r̂): sqrt((2l+1)/C_l) gives |T_l|² = 2l+1 ("component"); 1 keeps the
    paper's T_l·r̂^l = 1 ("paper"), whose squared norm is C_l."""
    return math.sqrt((2 * l + 1) / harmonic_constant(l)) if convention == "component" else 1.0


class ICTPNetwork(nn.Module):
    """Per-atom energies E_i = s · Σ_t readout_t(h_i^(t)) + μ_{Z_i} + E0_{Z_i}.

    Shapes: species (N,) int64 in [0, S), edge_index (2, E) int64 with row 0 the centre atom i
    and row 1 the neighbour j, vectors (E, 3) = r_j - r_i (+ periodic shift) -> (N,).
    """

    scalar_index: list[int]

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.cutoff = float(config.cutoff)
        self.edge_rank = int(config.edge_rank)
        num_species = len(config.elements)
        channels = config.channels
        parities = [0, 1] if config.odd else [0]

        # a linear map of the one-hot element, normalised by its fan-in sqrt(S) like every weight
        self.embedding = nn.Parameter(torch.randn(num_species, channels))
        self.embedding_norm = 1.0 / math.sqrt(num_species)
        self.bessel = BesselBasis(config.cutoff, config.num_bessel)
        self.envelope = PolynomialEnvelope(config.cutoff, config.envelope_p)
        tables = [
            harmonics_matrix(l, storage=config.storage) * edge_harmonic_scale(l, config.edge_harmonics)
            for l in range(config.edge_rank + 1)
        ]
        self.register_buffer("harmonics", torch.block_diag(*tables), persistent=False)  # (Σ 3^l, D_Y)

        layers: list[nn.Module] = []
        readouts: list[nn.Module] = []
        blocks: list[Block] = [(0, 0)]
        for t in range(config.layers):
            last = t == config.layers - 1
            allowed = [(0, 0)] if last else [(l, p) for l in range(config.max_rank + 1) for p in parities]
            layer = InteractionLayer(
                blocks,
                allowed,
                config.edge_rank,
                channels,
                num_species,
                config.correlation,
                config.variant,
                config.odd,
                config.storage,
                config.avg_num_neighbors,
                [config.num_bessel] + list(config.radial_mlp),
                residual=t > 0 or config.first_residual,
            )
            if (0, 0) not in layer.out_blocks:
                raise ValueError("this configuration produces no scalar features; increase edge_rank or correlation")
            layers.append(layer)
            readouts.append(MLPReadout(channels, config.readout_hidden) if last else LinearReadout(channels))
            blocks = layer.out_blocks
        self.layers = nn.ModuleList(layers)
        self.readouts = nn.ModuleList(readouts)
        for module in self.modules():  # the product basis' faster form for this dtype (README)
            if isinstance(module, SourceProduct):
                module.split_by_block = config.torch_dtype == torch.float64
        self.scalar_index: list[int] = [layer.out_blocks.index((0, 0)) for layer in layers]

        self.first_residual = bool(config.first_residual)
        # a buffer for the same reason as the convolutions' n̄ (traced graphs independent of the data)
        self.register_buffer("scale", torch.tensor(float(config.scale), dtype=torch.float64), persistent=False)
        e0 = [config.atomic_energies.get(e, 0.0) for e in config.elements]
        shift = [config.shift.get(e, 0.0) for e in config.elements]
        self.register_buffer("atomic_energies", torch.tensor(e0, dtype=torch.float64))
        self.register_buffer("energy_shift", torch.tensor(shift, dtype=torch.float64))
        self.register_buffer("z_to_index", element_table(config.elements))

    def use_edge_kernel(self, on: bool = True) -> bool:
        """Route the convolutions' edge contraction on CPU through the hand-written kernel
        (ictp_model.kernels): the same numbers, faster, for inference only (it has no second
        derivative, so training keeps it off).  Returns whether it is on: False where the kernel
        could not be built."""
        if on:
            from ictp_model.kernels import edge_kernel_available

            on = edge_kernel_available()
        for module in self.modules():
            if isinstance(module, TwoBodyFeatures):
                module.edge_kernel = on
        return on

    def embed(self, species: Tensor) -> Tensor:
        """The first layer's input h^(0): the normalised element embedding, (N,) -> (N, C, 1)."""
        return (self.embedding * self.embedding_norm).index_select(0, species).unsqueeze(-1)

    def edge_features(self, vectors: Tensor) -> list[Tensor]:
        """[edge harmonics (E, D_Y), radial basis × envelope (E, num_bessel)]."""
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        powers = flat_outer_powers(unit_vectors(vectors), self.edge_rank)
        harmonics = torch.matmul(torch.cat(powers, dim=-1), self.harmonics)
        radial = self.bessel(lengths) * self.envelope(lengths).unsqueeze(-1)
        return [harmonics, radial]

    def forward(
        self,
        species: Tensor,
        edge_index: Tensor,
        vectors: Tensor,
        receivers: Optional[list[int]] = None,
        edge_counts: Optional[list[int]] = None,
    ) -> Tensor:
        """Per-atom energies.

        receivers (optional, used by LAMMPS): layer t updates only the first receivers[t] atoms,
        with the edges centred on them; atoms must be ordered so that each layer's receivers come
        first and edges sorted by centre.  The result then covers the first receivers[-1] atoms.
        edge_counts (optional, with receivers): edge_counts[t] = the number of edges centred on
        those atoms, if the caller knows it (the compiled export: sizes, not values, so that the
        traced graph has no data-dependent branch); else it is searched for in edge_index.
        """
        edge_harmonics, radial = self.edge_features(vectors)
        h: list[Tensor] = [self.embed(species)]
        num_out = species.shape[0] if receivers is None else receivers[-1]
        energy = torch.zeros(num_out, dtype=vectors.dtype, device=vectors.device)
        for t, (layer, readout) in enumerate(zip(self.layers, self.readouts)):
            num_receivers, num_edges = species.shape[0], edge_index.shape[1]
            if receivers is not None:
                num_receivers = receivers[t]
                if edge_counts is not None:
                    num_edges = edge_counts[t]
                else:
                    bound = torch.tensor([num_receivers], dtype=edge_index.dtype, device=edge_index.device)
                    num_edges = int(torch.searchsorted(edge_index[0].contiguous(), bound).item())
            h = layer(
                h,
                species,
                edge_harmonics[:num_edges],
                radial[:num_edges],
                edge_index[:, :num_edges],
                num_receivers,
            )
            energy = energy + readout(h[self.scalar_index[t]].squeeze(-1))[:num_out]
        return self.scale * energy + self.site_offsets(energy.dtype).index_select(0, species[:num_out])

    def site_offsets(self, dtype: torch.dtype) -> Tensor:
        """What each element's site energy adds to the scaled readouts: E0 + shift, less the
        readouts of an isolated atom (non-zero with a first-layer residual), so that an atom
        without neighbours has exactly E0 + shift.  Shape (S,)."""
        offsets = (self.atomic_energies + self.energy_shift).to(dtype)
        if not self.first_residual:
            return offsets
        species = torch.arange(self.embedding.shape[0], device=self.embedding.device)
        h: list[Tensor] = [self.embed(species)]
        isolated = torch.zeros(species.shape[0], dtype=dtype, device=self.embedding.device)
        for t, (layer, readout) in enumerate(zip(self.layers, self.readouts)):
            h = layer.isolated(h, species)
            isolated = isolated + readout(h[self.scalar_index[t]].squeeze(-1))
        return offsets - self.scale * isolated
