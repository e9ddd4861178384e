"""How much a compiled training step would gain (issue 15's lever: epochs per minute), measured.

    python benchmarks/compiled_training.py --data ../shared/data/rmd17 --molecule ethanol

The step of `ictp train` as vs_mace.py runs it (C = 64, L = 1, l_max = 3, ν = 3, sym, float64,
batch 5, MACE's loss: mean (ΔE/N)² + 100 · mean ΔF²): the loss and its parameter gradients, double
backward included, traced by make_fx with symbolic sizes into one aten graph and compiled by
inductor with dynamic shapes.  Prints the eager and compiled milliseconds per step, the compile
seconds, and the largest difference of loss and gradients against the eager step of `ictp train`
(compute_properties, loss_terms, combine, autograd) on batches of 3, 5 and 10 structures (one
graph serves every size).  The traced function writes the loss out itself: loss_terms counts atoms
with bincount, whose size a symbolic trace cannot know; the comparison checks that it is the same.  An experiment, not a training path: the
optimiser step, EMA and shift fit are not included (they are the same in both).
"""

import argparse
import time
from pathlib import Path

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from ictp_model import build_model
from ictp_model.data.dataset import InMemoryDataset
from ictp_model.data.graph import collate
from ictp_model.data.io import read_samples
from ictp_model.device import INDUCTOR_OPTIONS, keep_freed_memory
from ictp_model.model.potential import compute_properties, forces_from_edges, species_index
from ictp_model.training.config import LossConfig
from ictp_model.training.loss import combine, loss_terms

LOSS = LossConfig(energy=1.0, forces=100.0, energy_mode="per_atom", reduction="mean")  # vs_mace.py's


def step_function(model: torch.nn.Module):
    """(parameters..., graph tensors...) -> (loss, ∂loss/∂parameters...)."""
    names = [n for n, _ in model.named_parameters()]

    def loss_and_gradients(*args):
        parameters = [p.requires_grad_(True) for p in args[: len(names)]]
        positions, species, edge_index, batch, energy, forces, num_atoms = args[len(names) :]
        vectors = (positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0])).requires_grad_()
        node_energy = torch.func.functional_call(model, dict(zip(names, parameters)), (species, edge_index, vectors))
        total = torch.zeros(energy.shape[0], dtype=node_energy.dtype).index_add(0, batch, node_energy)
        g = torch.autograd.grad([node_energy.sum()], [vectors], create_graph=True)[0]
        predicted = forces_from_edges(g, edge_index, positions.shape[0])
        loss = (((total - energy) / num_atoms) ** 2).mean() + 100.0 * ((predicted - forces) ** 2).mean()
        return (loss, *torch.autograd.grad([loss], parameters))

    return loss_and_gradients


def graph_inputs(model, graph) -> tuple:
    num_atoms = torch.bincount(graph.batch, minlength=graph.num_graphs).double()
    species = species_index(model.z_to_index, graph.numbers)
    return (graph.positions, species, graph.edge_index, graph.batch, graph.energy, graph.forces, num_atoms)


def per_step_ms(fn, batches, repeats: int) -> float:
    for b in batches[:3]:
        fn(b)
    start = time.perf_counter()
    for k in range(repeats):
        fn(batches[k % len(batches)])
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="e.g. ../shared/data/rmd17")
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    path = args.data / f"rmd17_{args.molecule}_train_01.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found (expected the rMD17 split-01 files, e.g. ../shared/data/rmd17)")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `ictp train` does
    torch.manual_seed(0)
    samples = read_samples(path)[:50]
    elements = sorted({s for sample in samples for s in sample.atoms.get_chemical_symbols()})
    model = build_model(dict(channels=64, max_rank=1, edge_rank=3, correlation=3, layers=2, cutoff=5.0,
                             variant="sym", dtype="float64", elements=elements))  # fmt: skip
    for module in model.modules():  # species_matmul's data-independent form (as the .pt2 export)
        if hasattr(module, "grouped_species"):
            module.grouped_species = False
    data = InMemoryDataset.from_samples(samples, 5.0, torch.float64)
    batches = [collate([data[i] for i in range(k, k + 5)]) for k in range(0, 50, 5)]
    parameters = [p.detach() for p in model.parameters()]
    step = step_function(model)

    def eager(graph):  # the step of `ictp train`
        terms = loss_terms(compute_properties(model, graph, forces=True, training=True), graph, LOSS)
        loss = combine({k: v for k, (v, _) in terms.items()}, {k: n for k, (_, n) in terms.items()}, LOSS)
        return [loss.detach(), *torch.autograd.grad([loss], list(model.parameters()))]

    start = time.perf_counter()
    traced = make_fx(step, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
        *[p.clone() for p in parameters], *graph_inputs(model, batches[0])
    )
    trace_s = time.perf_counter() - start
    compiled_fn = torch.compile(traced, backend="inductor", dynamic=True, options=INDUCTOR_OPTIONS)

    def compiled(graph):
        with torch.no_grad():
            return compiled_fn(*parameters, *graph_inputs(model, graph))

    start = time.perf_counter()
    compiled(batches[0])
    compile_s = time.perf_counter() - start
    print(f"trace {trace_s:.1f} s ({len(traced.graph.nodes)} nodes), compile {compile_s:.1f} s")
    for indices in ([3, 17, 29], list(range(5)), list(range(10))):
        graph = collate([data[i] for i in indices])
        reference, result = eager(graph), compiled(graph)
        loss = abs(float(reference[0] - result[0])) / abs(float(reference[0]))
        gradient = max(float((a - b).abs().max()) for a, b in zip(reference[1:], result[1:]))
        print(
            f"{len(indices):2d} structures: relative loss difference {loss:.1e}, max gradient difference {gradient:.1e}"
        )
    eager_ms = per_step_ms(eager, batches, args.repeats)
    compiled_ms = per_step_ms(compiled, batches, args.repeats)
    print(f"\n| {args.molecule}, batch 5, {args.threads} thread(s) | eager | compiled | gain |")
    print("|---|---|---|---|")
    print(f"| loss + gradients | {eager_ms:.1f} ms | {compiled_ms:.1f} ms | {eager_ms / compiled_ms:.2f}x |")


if __name__ == "__main__":
    main()
