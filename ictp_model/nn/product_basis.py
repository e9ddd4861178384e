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


class SourceProduct(nn.Module):
    """Every path from one block a of P_{ν-1} with any block of A, at once.

    A (all blocks concatenated, one slot) is contracted with one combined coupling table first,
    then one batched matmul over the (node, channel) pairs contracts the S_a slots of x.

    Shapes: x (N, C, S_a, d_a), A (N, C, D_A) -> (N, C, S_a, Σ_outputs d_c).
    """

    targets: list[int]
    target_dims: list[int]

    def __init__(self, a: int, l_a: int, a_ranks: list[int], outputs: list[tuple[int, int, int]], storage: str):
        """outputs: (index of the A block, output block index, output rank) for every path of a."""
        super().__init__()
        a_dims = [block_dim(l, storage) for l in a_ranks]
        self.a = a
        self.d_a = block_dim(l_a, storage)
        self.targets = [t for _, t, _ in outputs]
        self.target_dims = [block_dim(l, storage) for _, _, l in outputs]
        offsets = [sum(a_dims[:b]) for b in range(len(a_dims) + 1)]
        table = torch.zeros(offsets[-1], self.d_a, sum(self.target_dims), dtype=torch.float64)
        q = 0
        for (b, _, l), dim in zip(outputs, self.target_dims):
            coupling = coupling_tensor(l_a, a_ranks[b], l, storage=storage)
            table[offsets[b] : offsets[b + 1], :, q : q + dim] = coupling.transpose(0, 1)
            q += dim
        self.register_buffer("table", table.reshape(offsets[-1], -1), persistent=False)  # (D_A, d_a·Q)

    def forward(self, x: Tensor, a_cat: Tensor) -> Tensor:
        n, c, s = x.shape[0], x.shape[1], x.shape[2]
        partial = torch.matmul(a_cat, self.table).reshape(n * c, self.d_a, -1)  # (NC, d_a, Q)
        return torch.bmm(x.reshape(n * c, s, self.d_a), partial).reshape(n, c, s, -1)


class BlockProduct(nn.Module):
    """P_next = P ⊗ A for block lists; slots of one output block are concatenated in a fixed order.

    Shapes: list[(N, C, S_b, d_b)], list[(N, C, d_b)] -> list[(N, C, S'_b, d_b)] for out_blocks.
    """

    out_slots: list[int]

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
        a_ranks = [l for l, _ in a_blocks]
        sources: list[nn.Module] = []
        slots = [0 for _ in self.out_blocks]
        for a in range(len(p_blocks)):
            outputs = [(pb, self.out_blocks.index(out), out[0]) for pa, pb, out in paths if pa == a]
            if not outputs:
                continue
            sources.append(SourceProduct(a, p_blocks[a][0], a_ranks, outputs, storage))
            for _, t, _ in outputs:
                slots[t] += p_slots[a]
        self.sources = nn.ModuleList(sources)
        self.out_slots = slots

    def forward(self, p: list[Tensor], a: list[Tensor]) -> list[Tensor]:
        a_cat = torch.cat(a, dim=-1)
        pieces: list[list[Tensor]] = [[] for _ in self.out_slots]
        for source in self.sources:
            z = source(p[source.a], a_cat)
            start = 0
            for k, target in enumerate(source.targets):
                dim = source.target_dims[k]
                pieces[target].append(z[..., start : start + dim])
                start += dim
        return [torch.cat(ps, dim=2) for ps in pieces]


class ManyBodyFeatures(nn.Module):
    """B from A (see the module docstring).

    Shapes: A list[(N, C, d)] for a_blocks, species (N,) -> list[(N, C, d)] for :attr:`out_blocks`,
    the blocks of ``allowed_out`` that some order produces.
    """

    order_of_weight: list[int]
    block_of_weight: list[int]
    source_of_weight: list[int]

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

    def forward(self, a: list[Tensor], species: Tensor) -> list[Tensor]:
        order: list[Tensor] = [x.unsqueeze(2) for x in a]  # P_1: one slot per block
        orders: list[list[Tensor]] = [order]
        for prod in self.products:
            order = prod(order, a)
            orders.append(order)
        n = species.shape[0]
        out: list[Tensor] = [torch.zeros(0) for _ in self.out_blocks]
        started: list[bool] = [False for _ in self.out_blocks]
        for i, w in enumerate(self.weights):
            k = self.block_of_weight[i]
            x = orders[self.order_of_weight[i]][self.source_of_weight[i]]  # (N, C, S, d)
            if self.coupled:
                y = species_matmul(x.reshape(n, -1, x.shape[-1]), species, w * self.coupled_norm)
            else:
                w_node = w.index_select(0, species).reshape(n * self.channels, 1, -1)  # (NC, 1, S)
                y = torch.bmm(w_node, x.reshape(n * self.channels, x.shape[2], -1)).reshape(n, self.channels, -1)
            out[k] = out[k] + y if started[k] else y
            started[k] = True
        return out
