"""Two-body features A: weighted irreducible products of neighbour features with edge harmonics,
summed over neighbours (docs/math.md §2.1 step 4).

    A_i[c]^{(l3, path)} = 1/n̄ · Σ_j R_ij[path, c] · α_{l3} · (h_j[c]^{(l1)} ⊗ T_{l2}(r̂_ij))_{l3}

followed by `linear_second`, which mixes (channel, path) -> channel for each output block.
All paths into one output block are evaluated in one batched matmul per edge: the edge harmonics
are first contracted with those paths' coupling tables at once, G_e = Y_e · K_b (shape
(D_in, P_b · d_b)), then messages = h_j (C, D_in) @ G_e, where D_in is the concatenated input width.
"""

import math

import torch
from torch import Tensor, nn

from ictp_model.tensor.blocks import Block, block_dim, block_paths, sorted_blocks
from ictp_model.tensor.coupling import coupling_tensor


class OutputBlock(nn.Module):
    """What one output block's paths need: their coupling table (a constant), the last layer of
    the radial MLP giving their per-edge weights R_ij[c, path], and `linear_second`, which mixes
    (channel, path) -> channel with normalisation (C·P)^(-1/2). Weights are stored N(0, 1) and
    normalised in the forward pass (see nn.radial.ScaledLinear)."""

    def __init__(self, table: Tensor, num_paths: int, channels: int, radial_hidden: int):
        super().__init__()
        self.register_buffer("table", table, persistent=False)
        self.radial_head = nn.Parameter(torch.randn(radial_hidden, channels * num_paths))
        self.linear_second = nn.Parameter(torch.randn(channels * num_paths, channels))
        self.radial_norm = 1.0 / math.sqrt(radial_hidden)
        self.mix_norm = 1.0 / math.sqrt(channels * num_paths)


class TwoBodyFeatures(nn.Module):
    """Shapes: node blocks list[(N, C, d)], edge harmonics (E, D_Y), radial MLP features (E, H),
    edge_index (2, E), number of receiving atoms R -> list[(R, C, d)] for :attr:`out_blocks`."""

    block_paths: list[int]
    block_dims: list[int]

    def __init__(
        self,
        in_blocks: list[Block],
        edge_rank: int,
        out_max_rank: int,
        channels: int,
        odd: bool,
        storage: str,
        avg_num_neighbors: float,
        radial_hidden: int,
    ):
        super().__init__()
        edge_blocks = [(l, 0) for l in range(edge_rank + 1)]
        paths = block_paths(in_blocks, edge_blocks, out_max_rank, odd)
        self.out_blocks: list[Block] = sorted_blocks(p[2] for p in paths)
        self.channels = channels
        # a buffer, not a literal: a traced graph (compile: true, the .pt2 export) then does not
        # change with the training set's n̄, and inductor's cache serves every dataset
        self.register_buffer(
            "avg_num_neighbors", torch.tensor(float(avg_num_neighbors), dtype=torch.float64), persistent=False
        )

        in_offsets = _offsets([block_dim(l, storage) for l, _ in in_blocks])
        edge_offsets = _offsets([block_dim(l, storage) for l, _ in edge_blocks])
        d_in, d_y = in_offsets[-1], edge_offsets[-1]
        self.d_in = d_in

        # one coupling table per output block, (D_Y, D_in · P_b · d_b): all paths into block b
        self.block_paths: list[int] = []
        self.block_dims: list[int] = []
        tables: list[Tensor] = []
        for out in self.out_blocks:
            block = [p for p in paths if p[2] == out]
            dim = block_dim(out[0], storage)
            table = torch.zeros(d_in, d_y, len(block), dim, dtype=torch.float64)
            for k, (a, b, _) in enumerate(block):
                l1, l2, l3 = in_blocks[a][0], edge_blocks[b][0], out[0]
                table[in_offsets[a] : in_offsets[a + 1], edge_offsets[b] : edge_offsets[b + 1], k] = (
                    coupling_tensor(l1, l2, l3, storage=storage) / math.sqrt(len(block))  # α = P_l3^(-1/2)
                )
            tables.append(table.permute(1, 0, 2, 3).reshape(d_y, -1))
            self.block_paths.append(len(block))
            self.block_dims.append(dim)
        self.blocks = nn.ModuleList(
            [OutputBlock(t, n, channels, radial_hidden) for t, n in zip(tables, self.block_paths)]
        )

    def forward(
        self, h: list[Tensor], edge_harmonics: Tensor, radial: Tensor, edge_index: Tensor, num_receivers: int
    ) -> list[Tensor]:
        receiver, sender = edge_index[0], edge_index[1]
        num_nodes, num_edges, channels = num_receivers, edge_harmonics.shape[0], self.channels
        x = gather_rows(torch.cat(h, dim=-1), sender)  # (E, C, D_in)
        out: list[Tensor] = []
        for b, block in enumerate(self.blocks):
            table = block.table
            n_paths, dim = self.block_paths[b], self.block_dims[b]
            g = torch.matmul(edge_harmonics, table).reshape(num_edges, self.d_in, n_paths * dim)
            messages = torch.bmm(x, g).reshape(num_edges, channels, n_paths, dim)
            weights = torch.matmul(radial, block.radial_head * block.radial_norm)  # R_ij[c, path], (E, C·P_b)
            messages = messages * weights.reshape(num_edges, channels, n_paths, 1)
            summed = scatter_rows(messages.reshape(num_edges, channels * n_paths, dim), receiver, num_nodes)
            mixed = torch.matmul(block.linear_second.t() * block.mix_norm, summed)  # (C, C·P) @ (N, C·P, d)
            out.append(mixed / self.avg_num_neighbors)
        return out


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x[index] as a gather over an expanded index: its derivative is scatter_add, which
    inductor hands to ATen's kernel on CPU (an index_add it would compile to one atomic add
    per element, 10-30x slower here).  Shapes: x (N, A, B), index (E,) -> (E, A, B)."""
    expanded = index.view(-1, 1, 1).expand(index.shape[0], x.shape[1], x.shape[2])
    return torch.gather(x, 0, expanded)


def scatter_rows(x: Tensor, index: Tensor, num_rows: int) -> Tensor:
    """out[i] = Σ_{e: index[e] = i} x[e], as scatter_add (see :func:`gather_rows`).
    Shapes: x (E, A, B), index (E,) -> (num_rows, A, B)."""
    out = torch.zeros(num_rows, x.shape[1], x.shape[2], dtype=x.dtype, device=x.device)
    return out.scatter_add(0, index.view(-1, 1, 1).expand_as(x), x)


def _offsets(sizes: list[int]) -> list[int]:
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out
