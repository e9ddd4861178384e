"""Many-body features B: ν-fold channel-wise products of A with itself (docs/math.md §2.1 step 6, §2.2).

    P_1 = A,  P_ν = P_{ν-1} ⊗ A  (unweighted, every path kept as its own slot),
    B_i[c]^{(L)} = Σ_ν Σ_p w^{(ν)}[Z_i, c, p] · P_ν[i, c]^{(L, p)}          (variants full, sym)
    B_i[c']^{(L)} = Σ_ν Σ_{c,p} W^{(ν)}[Z_i][(c, p), c'] · P_ν[i, c]^{(L, p)}  (variant sym+lt)

Intermediate orders keep ranks <= l_max (the rank of A); the summed B keeps ranks <= the layer's
output rank.  `symmetric` drops the duplicate (l1 < l2) paths of A ⊗ A, which are equal to their
mirror images (the paper's "sym").
"""

import math

import torch
from torch import Tensor, nn

from ictp_model.tensor.blocks import Block, block_dim, block_paths, sorted_blocks
from ictp_model.tensor.coupling import coupling_tensor

from .linear import species_matmul


class PairTables(nn.Module):
    """The paths of one source block a with one block b of A: their coupling tables, constants.

    table (d_a·d_b, Q_b): x ⊗ A_b -> the paths' outputs side by side (SourceProduct.forward);
    path_table (K_b·d_a·d_b, Σ_outputs d): one x per path, each path's output added into its
    output block's columns (SourceProduct.weighted); the pair's paths are consecutive among the
    source's.
    """

    def __init__(self, b: int, table: Tensor, path_table: Tensor):
        super().__init__()
        self.b = b
        self.num_paths = path_table.shape[0] // table.shape[0]
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("path_table", path_table, persistent=False)


class SourceProduct(nn.Module):
    """Every path from one block a of P_{ν-1} with any block of A, grouped by the block b of A.

    For each b the outer product of x's components with A_b's is contracted with one combined
    coupling table: one matrix product over (node, channel, slot) rows.  (Batched products of tiny
    per-(node, channel) matrices ran at under 1 GFLOP/s here, their second derivatives worse; one
    table over all of A's blocks at once multiplied mostly zeros, as a path reads one block of A.)

    split_by_block (set by the network from its dtype) chooses between the two forms, which give
    the same numbers: per block of A (fewer operations; faster in float64 here, and compiled, the
    .pt2's form, in both dtypes), or one table over all of A's blocks (fewer, larger matrix
    products; faster in eager float32 here, README).

    Shapes: x (N, C, S_a, d_a), A list[(N, C, d_b)] -> (N, C, S_a, Σ_outputs d_c).
    """

    targets: list[int]
    target_dims: list[int]
    slot_starts: list[int]
    split_by_block: bool

    def __init__(
        self,
        a: int,
        l_a: int,
        a_ranks: list[int],
        outputs: list[tuple[int, int, int]],
        out_dims: list[int],
        slot_starts: list[int],
        storage: str,
    ):
        """outputs: (index of the A block, output block index, output rank) for every path of a,
        ordered by the A block; out_dims: the dims of all output blocks of the product (the layout
        of :meth:`weighted`); slot_starts: for each path, the first of its x's slots among its
        output block's slots."""
        super().__init__()
        self.a = a
        self.d_a = block_dim(l_a, storage)
        self.targets = [t for _, t, _ in outputs]
        self.slot_starts = list(slot_starts)
        self.target_dims = [block_dim(l, storage) for _, _, l in outputs]
        self.width = sum(self.target_dims)
        out_offsets = [sum(out_dims[:t]) for t in range(len(out_dims))]
        self.split_by_block = True
        a_dims = [block_dim(l, storage) for l in a_ranks]
        a_offsets = [sum(a_dims[:b]) for b in range(len(a_dims) + 1)]
        combined: list[Tensor] = []  # (d_a, D_A, Q) and (K, d_a, D_A, Σ out): every block of A at once
        combined_paths: list[Tensor] = []
        pairs: list[nn.Module] = []
        for b in sorted(set(b for b, _, _ in outputs)):
            mine = [k for k, (bk, _, _) in enumerate(outputs) if bk == b]
            if mine != list(range(mine[0], mine[0] + len(mine))):
                raise AssertionError("a source's paths are not ordered by the block of A")
            d_b = block_dim(a_ranks[b], storage)
            table = torch.zeros(self.d_a, d_b, sum(self.target_dims[k] for k in mine), dtype=torch.float64)
            path_table = torch.zeros(len(mine), self.d_a, d_b, sum(out_dims), dtype=torch.float64)
            q = 0
            for j, k in enumerate(mine):
                _, t, l = outputs[k]
                coupling = coupling_tensor(l_a, a_ranks[b], l, storage=storage)  # (d_a, d_b, d_l)
                dim = self.target_dims[k]
                table[:, :, q : q + dim] = coupling
                path_table[j, :, :, out_offsets[t] : out_offsets[t] + dim] = coupling
                q += dim
            pairs.append(PairTables(b, table.reshape(-1, q), path_table.reshape(-1, sum(out_dims))))
            wide = torch.zeros(self.d_a, a_offsets[-1], q, dtype=torch.float64)
            wide[:, a_offsets[b] : a_offsets[b + 1]] = table
            combined.append(wide)
            wide_paths = torch.zeros(len(mine), self.d_a, a_offsets[-1], sum(out_dims), dtype=torch.float64)
            wide_paths[:, :, a_offsets[b] : a_offsets[b + 1]] = path_table
            combined_paths.append(wide_paths)
        self.pairs = nn.ModuleList(pairs)
        self.register_buffer("table", torch.cat(combined, dim=-1).reshape(-1, self.width), persistent=False)
        self.register_buffer("path_table", torch.cat(combined_paths).reshape(-1, sum(out_dims)), persistent=False)

    def forward(self, x: Tensor, a: list[Tensor], a_cat: Tensor) -> Tensor:
        """a_cat: A's blocks concatenated, (N, C, D_A) (the one-table form's input)."""
        n, c, s = x.shape[0], x.shape[1], x.shape[2]
        if not self.split_by_block:
            outer = x.unsqueeze(-1) * a_cat.unsqueeze(2).unsqueeze(2)  # (N, C, S, d_a, D_A)
            rows = outer.reshape(n * c * s, self.table.shape[0])
            return torch.matmul(rows, self.table).reshape(n, c, s, self.width)
        pieces: list[Tensor] = []
        for pair in self.pairs:
            outer = x.unsqueeze(-1) * a[pair.b].unsqueeze(2).unsqueeze(2)  # (N, C, S, d_a, d_b)
            rows = outer.reshape(n * c * s, pair.table.shape[0])  # (explicit sizes: no atoms is a valid input)
            pieces.append(torch.matmul(rows, pair.table).reshape(n, c, s, pair.table.shape[1]))
        return torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]

    def weighted(self, folded: Tensor, a: list[Tensor], a_cat: Tensor) -> Tensor:
        """Σ_k (x_k ⊗ A)_{path k}, each path's result added into its output block's columns.

        Shapes: folded (N, C, K, d_a), one x per path k; A list[(N, C, d_b)], a_cat (N, C, D_A)
        -> (N, C, Σ_out d).
        """
        n, c = folded.shape[0], folded.shape[1]
        if not self.split_by_block:
            outer = folded.unsqueeze(-1) * a_cat.unsqueeze(2).unsqueeze(2)  # (N, C, K, d_a, D_A)
            rows = outer.reshape(n * c, self.path_table.shape[0])
            return torch.matmul(rows, self.path_table).reshape(n, c, self.path_table.shape[1])
        total = torch.zeros(0)
        split = folded.split([pair.num_paths for pair in self.pairs], dim=2)
        for i, pair in enumerate(self.pairs):
            outer = split[i].unsqueeze(-1) * a[pair.b].unsqueeze(2).unsqueeze(2)  # (N, C, K_b, d_a, d_b)
            rows = outer.reshape(n * c, pair.path_table.shape[0])
            y = torch.matmul(rows, pair.path_table).reshape(n, c, pair.path_table.shape[1])
            total = total + y if i > 0 else y
        return total


class BlockProduct(nn.Module):
    """P_next = P ⊗ A for block lists; slots of one output block are concatenated in a fixed order.

    Shapes: list[(N, C, S_b, d_b)], list[(N, C, d_b)] -> list[(N, C, S'_b, d_b)] for out_blocks.
    """

    out_slots: list[int]
    out_dims: list[int]

    def __init__(
        self,
        p_blocks: list[Block],
        p_slots: list[int],
        a_blocks: list[Block],
        out_max_rank: int,
        odd: bool,
        symmetric: bool,
        storage: str,
    ):
        super().__init__()
        paths = block_paths(p_blocks, a_blocks, out_max_rank, odd, symmetric)
        self.out_blocks: list[Block] = sorted_blocks(p[2] for p in paths)
        self.out_dims = [block_dim(l, storage) for l, _ in self.out_blocks]
        a_ranks = [l for l, _ in a_blocks]
        slots = [0 for _ in self.out_blocks]
        per_source = []  # (a, its paths, the first slot of each path in its output block)
        for a in range(len(p_blocks)):
            outputs = [(pb, self.out_blocks.index(out), out[0]) for pa, pb, out in paths if pa == a]
            if not outputs:
                continue
            starts = []
            for _, t, _ in outputs:
                starts.append(slots[t])
                slots[t] += p_slots[a]
            per_source.append((a, outputs, starts))
        self.out_slots = slots
        sources: list[nn.Module] = []
        for a, outputs, starts in per_source:
            sources.append(SourceProduct(a, p_blocks[a][0], a_ranks, outputs, self.out_dims, starts, storage))
        self.sources = nn.ModuleList(sources)

    def forward(self, p: list[Tensor], a: list[Tensor]) -> list[Tensor]:
        a_cat = torch.cat(a, dim=-1)
        pieces: list[list[Tensor]] = [[] for _ in self.out_slots]
        for source in self.sources:
            z = source(p[source.a], a, a_cat)
            start = 0
            for k, target in enumerate(source.targets):
                dim = source.target_dims[k]
                pieces[target].append(z[..., start : start + dim])
                start += dim
        return [torch.cat(ps, dim=2) for ps in pieces]

    def weighted(self, p: list[Tensor], a: list[Tensor], weights: list[Tensor]) -> list[Tensor]:
        """Σ_s w[s] · forward(p, a)[t][:, :, s] for every output block t, without forming the slots:
        the weights are summed into P's slots first (the product is linear in P).

        Shapes: weights list[(N, C, S'_t)] for out_blocks -> list[(N, C, d_t)].
        """
        a_cat = torch.cat(a, dim=-1)
        total = torch.zeros(0)
        for i, source in enumerate(self.sources):
            x = p[source.a]  # (N, C, S_a, d_a)
            s = x.shape[2]
            # slices, not index_select + split: AOTInductor (torch 2.13) compiled those to wrong numbers
            w = torch.stack([weights[t][:, :, j : j + s] for t, j in zip(source.targets, source.slot_starts)], dim=2)
            folded = (w.unsqueeze(-1) * x.unsqueeze(2)).sum(3)  # (N, C, K, S_a) · (N, C, S_a, d_a) -> (N, C, K, d_a)
            y = source.weighted(folded, a, a_cat)
            total = total + y if i > 0 else y
        out: list[Tensor] = []
        start = 0
        for dim in self.out_dims:
            out.append(total[:, :, start : start + dim])
            start += dim
        return out


class ManyBodyFeatures(nn.Module):
    """B from A (see the module docstring).

    Shapes: A list[(N, C, d)] for a_blocks, species (N,) -> list[(N, C, d)] for :attr:`out_blocks`,
    the blocks of ``allowed_out`` that some order produces.
    """

    order_of_weight: list[int]
    block_of_weight: list[int]
    source_of_weight: list[int]
    final_order: int
    final_slots: list[int]
    final_block: list[int]
    grouped_species: bool  # species_matmul's form (False in the compiled export)

    def __init__(
        self,
        a_blocks: list[Block],
        allowed_out: list[Block],
        correlation: int,
        channels: int,
        num_species: int,
        odd: bool,
        symmetric: bool,
        coupled: bool,
        storage: str,
    ):
        super().__init__()
        l_max = max(l for l, _ in a_blocks)
        out_max_rank = max(l for l, _ in allowed_out)
        self.coupled = coupled
        self.grouped_species = True
        self.channels = channels
        self.coupled_norm = 1.0 / math.sqrt(channels)
        products: list[nn.Module] = []
        orders: list[tuple[list[Block], list[int]]] = [(list(a_blocks), [1] * len(a_blocks))]
        for nu in range(2, correlation + 1):
            p_blocks, p_slots = orders[-1]
            max_rank = out_max_rank if nu == correlation else l_max
            prod = BlockProduct(p_blocks, p_slots, a_blocks, max_rank, odd, symmetric and nu == 2, storage)
            products.append(prod)
            orders.append((prod.out_blocks, prod.out_slots))
        self.products = nn.ModuleList(products)
        self.out_blocks: list[Block] = [b for b in allowed_out if any(b in blocks for blocks, _ in orders)]

        # one weight per (order, output block) that the order produces
        self.order_of_weight: list[int] = []
        self.block_of_weight: list[int] = []
        self.source_of_weight: list[int] = []
        weights: list[nn.Parameter] = []
        for nu, (blocks, slots) in enumerate(orders):
            for k, block in enumerate(self.out_blocks):
                if block not in blocks:
                    continue
                s = slots[blocks.index(block)]
                self.order_of_weight.append(nu)
                self.block_of_weight.append(k)
                self.source_of_weight.append(blocks.index(block))
                if coupled:  # channel-coupled ("lt"): W[Z] in R^{(C·P) x C}, its 1/sqrt(C) applied in forward
                    w = torch.randn(num_species, channels * s, channels) / s
                else:  # uncoupled: w[Z] in R^{C x P}
                    w = torch.randn(num_species, channels, s) / s
                weights.append(nn.Parameter(w))
        self.weights = nn.ParameterList(weights)

        # The highest order enters B only through its weighted sum, so (uncoupled weights) it is
        # formed already summed (BlockProduct.weighted); -1: every order is formed slot by slot.
        self.final_order = len(products) if products and not coupled else -1
        final_blocks, final_slots = orders[-1]
        self.final_slots = list(final_slots)
        self.final_block = [self.out_blocks.index(b) if b in self.out_blocks else -1 for b in final_blocks]

    def forward(self, a: list[Tensor], species: Tensor) -> list[Tensor]:
        order: list[Tensor] = [x.unsqueeze(2) for x in a]  # P_1: one slot per block
        orders: list[list[Tensor]] = [order]
        n = species.shape[0]
        out: list[Tensor] = [torch.zeros(0) for _ in self.out_blocks]
        started: list[bool] = [False for _ in self.out_blocks]
        for j, prod in enumerate(self.products):
            if j + 1 == self.final_order:
                summed = prod.weighted(order, a, self.final_weights(species, a[0]))
                for t, k in enumerate(self.final_block):
                    if k >= 0:
                        out[k] = out[k] + summed[t] if started[k] else summed[t]
                        started[k] = True
            else:
                order = prod(order, a)
                orders.append(order)
        for i, w in enumerate(self.weights):
            if self.order_of_weight[i] != self.final_order:  # (the highest order is summed above)
                k = self.block_of_weight[i]
                x = orders[self.order_of_weight[i]][self.source_of_weight[i]]  # (N, C, S, d)
                if self.coupled:
                    y = species_matmul(
                        x.reshape(n, x.shape[1] * x.shape[2], x.shape[3]),
                        species,
                        w * self.coupled_norm,
                        self.grouped_species,
                    )
                else:
                    w_node = w.index_select(0, species).reshape(n * self.channels, 1, w.shape[2])  # (NC, 1, S)
                    y = torch.bmm(w_node, x.reshape(n * self.channels, x.shape[2], x.shape[3]))
                    y = y.reshape(n, self.channels, x.shape[3])
                out[k] = out[k] + y if started[k] else y
                started[k] = True
        return out

    def final_weights(self, species: Tensor, like: Tensor) -> list[Tensor]:
        """Each node's slot weights of the highest order, per block of that order (zeros for a
        block that B does not keep).  Shapes: species (N,) -> list[(N, C, S_t)]."""
        n = species.shape[0]
        weights: list[Tensor] = [
            torch.zeros(n, self.channels, s, dtype=like.dtype, device=like.device) for s in self.final_slots
        ]
        for i, w in enumerate(self.weights):
            if self.order_of_weight[i] == self.final_order:
                weights[self.source_of_weight[i]] = w.index_select(0, species)
        return weights
