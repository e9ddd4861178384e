"""The training step compiled (`compile: true`): loss terms and every parameter gradient, double
backward included, as one graph that inductor compiles.

make_fx traces, with symbolic sizes, the step the eager loop takes — compute_properties(training=True),
term_sums, the gradient of Σ coefficient · sum — into one aten graph; torch.compile(dynamic=True)
turns it into fused C++ (or CUDA) kernels.  The parameters are inputs of the graph, so one graph
serves every optimiser step, and the atom, edge and structure counts are symbols, so it serves
every batch (benchmarks/compiled_training.py: 1.9x faster than eager on ethanol, equal to 1e-13).
What the graph returns (the term sums, the energies for the shift fit, the gradients written into
.grad) is what the eager step leaves behind, so gradient summation over ranks, clipping, Adam and
EMA are the same code in both modes.  Compiling takes one to two minutes on a cold cache (inductor
keeps its results in TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_$USER, so a second run
of the same architecture takes seconds).
"""

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Optional

import torch
from torch import Tensor, nn

from ictp_model.data.graph import AtomicGraph
from ictp_model.model.potential import compute_properties

from .config import ConfigError, LossConfig
from .loss import active_terms, term_sums

# the graph fields a training step reads (numbers enter as species indices, pbc not at all)
GRAPH_FIELDS = (
    "positions",
    "cell",
    "edge_index",
    "shifts",
    "batch",
    "energy",
    "forces",
    "stress",
    "weight",
    "stress_mask",
)


class CompileFailed(ConfigError):
    """Tracing or compiling the training step failed: the setting compile: true cannot work on
    this machine (``ictp train`` reports it like any bad setting); compile: false works everywhere."""


@contextlib.contextmanager
def ungrouped_species(network: nn.Module) -> Iterator[None]:
    """species_matmul in its data-independent form while tracing (the grouped form asks which
    species a batch holds, which a symbolic trace cannot know); the same numbers either way."""
    modules = [m for m in network.modules() if hasattr(m, "grouped_species")]
    before = [m.grouped_species for m in modules]
    for m in modules:
        m.grouped_species = False
    try:
        yield
    finally:
        for m, value in zip(modules, before):
            m.grouped_species = value


class _TermSums(nn.Module):
    """graph -> (the active terms' sums, predicted energies); the network's parameters are swapped
    for the graph's inputs by functional_call."""

    def __init__(self, network: nn.Module, loss: LossConfig, stress: bool, terms: tuple[str, ...]):
        super().__init__()
        self.network, self.loss, self.stress, self.terms = network, loss, stress, terms

    def forward(self, graph: AtomicGraph, species: Tensor, num_atoms: Tensor) -> tuple[list[Tensor], Tensor]:
        pred = compute_properties(self.network, graph, forces=True, stress=self.stress, training=True, species=species)
        sums = term_sums(pred, graph, self.loss, num_atoms)
        return [sums[t] for t in self.terms], pred["energy"]


class CompiledStep:
    """step(graph, species, num_atoms, factors) -> (term sums, energies (G,), gradients): the
    gradients of Σ_t factors[t] · sum_t with respect to network.parameters() (None where the loss
    does not depend on a parameter, as autograd leaves .grad)."""

    def __init__(self, network: nn.Module, loss: LossConfig, stress: bool, log: Callable[[str], None] = print):
        self.network, self.loss, self.stress, self.log = network, loss, stress, log
        self.names = [name for name, _ in network.named_parameters()]
        self._graphs: dict[tuple, tuple[Callable, list[int]]] = {}  # by (terms, fields present)

    def __call__(
        self, graph: AtomicGraph, species: Tensor, num_atoms: Tensor, factors: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor, list[Optional[Tensor]]]:
        terms = tuple(active_terms(graph, self.loss))
        fields = tuple(f for f in GRAPH_FIELDS if getattr(graph, f) is not None)
        parameters = [p.detach() for p in self.network.parameters()]
        inputs = [getattr(graph, f) for f in fields] + [species, num_atoms, torch.stack([factors[t] for t in terms])]
        key = (terms, fields)
        first = key not in self._graphs
        started = time.perf_counter()
        try:
            if first:
                self._graphs[key] = self._trace(terms, fields, parameters, inputs)
            compiled, used = self._graphs[key]
            with torch.no_grad(), _compile_threads(), _distinct_sizes():
                out = compiled(*parameters, *inputs)
        except Exception as error:
            raise CompileFailed(
                f"compiling the training step failed ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}). It needs a C++ "
                "compiler (for CUDA also triton) that torch's inductor can call; compile: false trains "
                "the same model everywhere"
            ) from error
        if first:
            self.log(f"training step compiled in {time.perf_counter() - started:.1f} s")
        gradients: list[Optional[Tensor]] = [None] * len(parameters)
        for index, gradient in zip(used, out[len(terms) + 1 :]):
            gradients[index] = gradient
        return dict(zip(terms, out[: len(terms)])), out[len(terms)], gradients

    def _trace(self, terms: tuple, fields: tuple, parameters: list[Tensor], inputs: list[Tensor]):
        from torch.fx.experimental.proxy_tensor import make_fx

        module = _TermSums(self.network, self.loss, self.stress, terms)
        names = [f"network.{name}" for name in self.names]
        count, used = len(parameters), []

        def step(*args):
            weights = [p.requires_grad_(True) for p in args[:count]]
            values = dict(zip(fields, args[count : count + len(fields)]))
            species, num_atoms, factors = args[count + len(fields) :]
            graph = AtomicGraph(
                numbers=species, pbc=None, num_graphs=values["cell"].shape[0], **values,
            )  # fmt: skip
            sums, energy = torch.func.functional_call(module, dict(zip(names, weights)), (graph, species, num_atoms))
            loss = factors[0] * sums[0]
            for k in range(1, len(sums)):
                loss = loss + factors[k] * sums[k]
            gradients = torch.autograd.grad([loss], weights, allow_unused=True)
            used[:] = [i for i, g in enumerate(gradients) if g is not None]
            return (*[s.detach() for s in sums], energy.detach(), *[g for g in gradients if g is not None])

        with ungrouped_species(self.network), _distinct_sizes():
            traced = make_fx(step, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
                *[p.clone() for p in parameters], *inputs
            )
        return torch.compile(traced, backend="inductor", dynamic=True), used


def _distinct_sizes():
    """No duck shapes, in the trace and in dynamo's guards: sizes that happen to be equal in the
    first batch (3 structures and xyz) stay apart, else the next batch size would compile again.
    (A batch of one structure still compiles once more: dynamo specialises sizes of 1, and
    inductor cannot yet lower this graph with that special case turned off.)"""
    return torch.fx.experimental._config.patch(use_duck_shape=False)


@contextlib.contextmanager
def _compile_threads() -> Iterator[None]:
    """Compile with no more processes than the run may use (a one-thread run beside another job
    must not take a second core to compile)."""
    import torch._inductor.config as inductor

    with inductor.patch(compile_threads=max(1, min(inductor.compile_threads, torch.get_num_threads()))):
        yield
