"""One message-passing layer: two-body features A, many-body features B, update and residual."""

import torch
from torch import Tensor, nn

from ictp_model.tensor.blocks import Block, block_dim

from .convolution import TwoBodyFeatures
from .linear import BlockLinear, SpeciesLinear
from .product_basis import ManyBodyFeatures
from .radial import RadialMLP


class InteractionLayer(nn.Module):
    """h^(t) = Linear(B(A(h^(t-1)))) + SC(h^(t-1), Z)  (no self-connection in the first layer,
    as in MACE, so an isolated atom has exactly zero interaction energy).

    Shapes: h list[(N, C, d)] for in_blocks, species (N,), edge harmonics (E, D_Y),
    radial basis (E, num_basis), edge_index (2, E) -> list[(N, C, d)] for :attr:`out_blocks`.
    """

    residual_targets: list[int]
    out_dims: list[int]

    def __init__(
        self,
        in_blocks: list[Block],
        out_allowed: list[Block],
        edge_rank: int,
        channels: int,
        num_species: int,
        correlation: int,
        variant: str,
        odd: bool,
        storage: str,
        avg_num_neighbors: float,
        radial_sizes: list[int],
        residual: bool,
    ):
        super().__init__()
        self.linear_first = BlockLinear(in_blocks, channels, channels)
        self.radial_mlp = RadialMLP(radial_sizes)
        self.conv = TwoBodyFeatures(
            in_blocks, edge_rank, edge_rank, channels, odd, storage, avg_num_neighbors, radial_sizes[-1]
        )
        self.product = ManyBodyFeatures(
            self.conv.out_blocks,
            out_allowed,
            correlation,
            channels,
            num_species,
            odd,
            symmetric=variant in ("sym", "sym+lt"),
            coupled=variant == "sym+lt",
            storage=storage,
        )
        self.out_blocks: list[Block] = self.product.out_blocks
        self.out_dims: list[int] = [block_dim(l, storage) for l, _ in self.out_blocks]
        self.channels = channels
        self.linear_update = BlockLinear(self.out_blocks, channels, channels)
        targets = [k for k, b in enumerate(self.out_blocks) if residual and b in in_blocks]
        self.residual_targets: list[int] = targets
        self.residual = SpeciesLinear(
            [in_blocks.index(self.out_blocks[k]) for k in targets], num_species, channels, channels
        )

    def forward(
        self,
        h: list[Tensor],
        species: Tensor,
        edge_harmonics: Tensor,
        radial_basis: Tensor,
        edge_index: Tensor,
        num_receivers: int,
    ) -> list[Tensor]:
        """Updates the first num_receivers atoms (the centres of the given edges); every atom may send."""
        weights = self.radial_mlp(radial_basis)
        a = self.conv(self.linear_first(h), edge_harmonics, weights, edge_index, num_receivers)
        species = species[:num_receivers]
        out = self.linear_update(self.product(a, species))
        skip = self.residual([x[:num_receivers] for x in h], species)
        for i, k in enumerate(self.residual_targets):
            out[k] = out[k] + skip[i]
        return out

    def isolated(self, h: list[Tensor], species: Tensor) -> list[Tensor]:
        """The update of atoms without neighbours: A = 0, so B = 0 and only the residual is left."""
        n = species.shape[0]
        out = [torch.zeros(n, self.channels, d, dtype=h[0].dtype, device=h[0].device) for d in self.out_dims]
        skip = self.residual(h, species)
        for i, k in enumerate(self.residual_targets):
            out[k] = skip[i]
        return out
