"""Two-body features A: weighted irreducible products of neighbour features with edge harmonics,
summed over neighbours (docs/math.md §2.1 step 4).

    A_i[c]^{(l3, path)} = 1/n̄ · Σ_j R_ij[path, c] · α_{l3} · (h_j[c]^{(l1)} ⊗ T_{l2}(r̂_ij))_{l3}

followed by `linear_second`, which mixes (channel, path) -> channel for each output block.

The paths are evaluated grouped by their input block a (rank l1, d_a components), because a path
reads only its own input block: for each group the edge harmonics are first contracted with the
group's coupling tables at once, G_e = Y_e · K_a (shape (d_a, Q_a), Q_a the output components of
all the group's paths), then messages = G_eᵀ (Q_a, d_a) @ h_j^{(a)} (d_a, C).  (One product over
the whole input width D_in would multiply mostly zeros: a path's rows are d_a of D_in.)  Per-edge
tensors keep the channels last, so their elementwise work runs over C contiguous values.
A group's columns are ordered by output block, then path; within an output block the paths are
ordered by input block (tensor.blocks.block_paths), so each block's paths are the groups' pieces
concatenated in group order.

For inference on CPU (`edge_kernel`, set by ICTPNetwork.use_edge_kernel) the gather, product,
weighting and sum over neighbours are one hand-written kernel (ictp_model/kernels), which never
forms the (E, Q_a, C) messages; :meth:`TwoBodyFeatures.reference_sums` is the reference it equals.
"""

import math

import torch
from torch import Tensor, nn

from ictp_model.tensor.blocks import Block, block_dim, block_paths, sorted_blocks
from ictp_model.tensor.coupling import coupling_tensor

from .linear import wide_matmul


class OutputBlock(nn.Module):
    """The parameters of one output block's paths: the last layer of the radial MLP giving their
    per-edge weights R_ij[c, path], and `linear_second`, which mixes (channel, path) -> channel with
    normalisation (C·P)^(-1/2). Weights are stored N(0, 1) and normalised in the forward pass
    (see nn.radial.ScaledLinear)."""

    def __init__(self, num_paths: int, channels: int, radial_hidden: int):
        super().__init__()
        self.radial_head = nn.Parameter(torch.randn(radial_hidden, channels * num_paths))
        self.linear_second = nn.Parameter(torch.randn(channels * num_paths, channels))
        self.radial_norm = 1.0 / math.sqrt(radial_hidden)
        self.mix_norm = 1.0 / math.sqrt(channels * num_paths)


class InputGroup(nn.Module):
    """The paths that read input block a: their coupling table (D_Y, d_a · Q_a), a constant, and
    the pieces of the group's columns, one per output block it reaches: that block's index, the
    number of its paths in the group, their output dimension and the first of them among the
    block's paths.  path_of_column (Q_a,): each column's path among the group's paths."""

    piece_block: list[int]
    piece_paths: list[int]
    piece_dim: list[int]
    piece_widths: list[int]
    piece_first_path: list[int]

    def __init__(self, a: int, d_a: int, table: Tensor, pieces: list[tuple[int, int, int, int]]):
        super().__init__()
        self.a = a
        self.d_a = d_a
        self.register_buffer("table", table, persistent=False)
        self.piece_block = [p[0] for p in pieces]
        self.piece_paths = [p[1] for p in pieces]
        self.piece_dim = [p[2] for p in pieces]
        self.piece_first_path = [p[3] for p in pieces]
        self.piece_widths = [p[1] * p[2] for p in pieces]
        self.width = sum(self.piece_widths)  # Q_a
        self.num_paths = sum(self.piece_paths)
        columns: list[int] = []  # a piece's columns are (path, component) pairs
        for start, (n, d) in zip(_offsets(self.piece_paths), zip(self.piece_paths, self.piece_dim)):
            for k in range(n):
                columns += [start + k] * d
        self.register_buffer("path_of_column", torch.tensor(columns, dtype=torch.long), persistent=False)


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
        edge_offsets = _offsets([block_dim(l, storage) for l, _ in edge_blocks])

        per_block = [[p for p in paths if p[2] == out] for out in self.out_blocks]
        self.block_paths: list[int] = [len(block) for block in per_block]
        self.block_dims: list[int] = [block_dim(l, storage) for l, _ in self.out_blocks]
        groups: list[nn.Module] = []
        next_path = [0 for _ in per_block]  # the groups' pieces must tile each block's paths in order
        for a, (l1, _) in enumerate(in_blocks):
            d_a = block_dim(l1, storage)
            pieces: list[tuple[int, int, int, int]] = []
            columns: list[Tensor] = []  # (D_Y, d_a, d_b) per path, in the group's column order
            for b, block in enumerate(per_block):
                mine = [k for k, p in enumerate(block) if p[0] == a]
                if not mine:
                    continue
                if mine != list(range(next_path[b], next_path[b] + len(mine))):
                    raise AssertionError("a block's paths are not ordered by input block")
                next_path[b] += len(mine)
                pieces.append((b, len(mine), self.block_dims[b], mine[0]))
                for k in mine:
                    e, l3 = block[k][1], self.out_blocks[b][0]
                    coupling = coupling_tensor(l1, edge_blocks[e][0], l3, storage=storage)  # (d_a, d_e, d_b)
                    column = torch.zeros(edge_offsets[-1], d_a, self.block_dims[b], dtype=torch.float64)
                    # α = P_l3^(-1/2)
                    column[edge_offsets[e] : edge_offsets[e + 1]] = coupling.transpose(0, 1) / math.sqrt(len(block))
                    columns.append(column)
            if pieces:
                table = torch.cat(columns, dim=-1).reshape(edge_offsets[-1], -1)  # (D_Y, d_a · Q_a)
                groups.append(InputGroup(a, d_a, table, pieces))
        self.groups = nn.ModuleList(groups)
        self.blocks = nn.ModuleList([OutputBlock(n, channels, radial_hidden) for n in self.block_paths])
        self.edge_kernel = False  # ICTPNetwork.use_edge_kernel

    def forward(
        self, h: list[Tensor], edge_harmonics: Tensor, radial: Tensor, edge_index: Tensor, num_receivers: int
    ) -> list[Tensor]:
        # Per-edge tensors are laid out (E, component, C): channels innermost, so the elementwise
        # work on the messages runs over 64 contiguous channels, not over 1-7 components.
        receiver, sender = edge_index[0], edge_index[1]
        num_edges, channels = edge_harmonics.shape[0], self.channels
        kernel = self.edge_kernel and edge_harmonics.device.type == "cpu"
        heads: list[Tensor] = []  # each block's radial head as (H, C, P_b)
        for b, block in enumerate(self.blocks):
            heads.append((block.radial_head * block.radial_norm).reshape(-1, channels, self.block_paths[b]))
        pieces: list[list[Tensor]] = [[] for _ in self.blocks]  # (R, P, d_b, C) per group reaching b
        for group in self.groups:
            # R_ij[c, path] of the group's paths, (E, P_a, C)
            head = torch.cat(
                [
                    heads[b][:, :, first : first + n]
                    for b, n, first in zip(group.piece_block, group.piece_paths, group.piece_first_path)
                ],
                dim=2,
            )
            w = wide_matmul(radial, head.transpose(1, 2).reshape(-1, group.num_paths * channels))
            w = w.reshape(num_edges, group.num_paths, channels)
            x = h[group.a].transpose(1, 2).contiguous()  # (N, d_a, C)
            g = torch.matmul(edge_harmonics, group.table).reshape(num_edges, group.d_a, group.width)
            if kernel:  # (R, Q_a, C), split into the pieces' (R, P·d_b, C)
                summed = self.contract_edges(g, x, w, group.path_of_column, receiver, sender, num_receivers)
                sums = summed.split(group.piece_widths, dim=1)
            else:
                sums = self.reference_sums(g, x, w, receiver, sender, num_receivers, group.piece_paths, group.piece_dim)
            for i, (b, n_paths, dim) in enumerate(zip(group.piece_block, group.piece_paths, group.piece_dim)):
                pieces[b].append(sums[i].reshape(num_receivers, n_paths, dim, channels))
        out: list[Tensor] = []
        for b, block in enumerate(self.blocks):
            n_paths, dim = self.block_paths[b], self.block_dims[b]
            summed = torch.cat(pieces[b], dim=1) if len(pieces[b]) > 1 else pieces[b][0]  # (R, P, d, C)
            # 2-D rows, so the product is one GEMM even where this reshape is a strided view (P = 1)
            summed = summed.transpose(1, 2).reshape(num_receivers * dim, n_paths * channels)
            # linear_second's rows are (c, p) pairs; here the (p, c) pairs are contiguous
            mix = (block.linear_second * block.mix_norm).reshape(channels, n_paths, channels).transpose(0, 1)
            mixed = torch.matmul(summed, mix.reshape(n_paths * channels, channels))  # (R·d, C)
            out.append(mixed.reshape(num_receivers, dim, channels).transpose(1, 2) / self.avg_num_neighbors)
        return out

    def reference_sums(
        self,
        g: Tensor,
        x: Tensor,
        w: Tensor,
        receiver: Tensor,
        sender: Tensor,
        num_receivers: int,
        piece_paths: list[int],
        piece_dims: list[int],
    ) -> list[Tensor]:
        """Σ_j R_ij[path, c] (G_eᵀ h_j)[path, m, c] for each piece of one input block's group,
        (R, P·d_b, C).  Shapes: g (E, d_a, Q_a), x (N, d_a, C), w (E, P_a, C)."""
        num_edges, channels = g.shape[0], self.channels
        x = gather_rows(x, sender)  # (E, d_a, C)
        g = g.transpose(1, 2)  # (E, Q_a, d_a)
        messages = g * x if x.shape[1] == 1 else torch.bmm(g, x)  # (E, Q_a, C)
        # split, not slices: a slice's gradient is a zero tensor of the whole group's size
        split = messages.split([n * d for n, d in zip(piece_paths, piece_dims)], dim=1)
        weights = w.split(piece_paths, dim=1)
        sums: list[Tensor] = []
        for i, (n_paths, dim) in enumerate(zip(piece_paths, piece_dims)):
            m = split[i].reshape(num_edges, n_paths, dim, channels) * weights[i].unsqueeze(2)
            sums.append(scatter_rows(m.reshape(num_edges, n_paths * dim, channels), receiver, num_receivers))
        return sums

    @torch.jit.unused
    def contract_edges(
        self, g: Tensor, x: Tensor, w: Tensor, path: Tensor, receiver: Tensor, sender: Tensor, num_receivers: int
    ) -> Tensor:
        """The hand-written kernel (ictp_model/kernels): the same sums as the reference path below,
        without its (E, Q_a, C) intermediates.  Inference only (no second derivative); TorchScript
        exports keep the reference path."""
        return torch.ops.ictp.edge_contract(g, x, w, path, receiver, sender, num_receivers)


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
