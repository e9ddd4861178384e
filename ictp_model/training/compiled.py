"""Training compiled (`compile: true`): the training step — loss terms and every parameter
gradient, double backward included — and the validation pass, each as one graph that inductor
compiles.

make_fx traces, with symbolic sizes, what the eager loop does — compute_properties(training=True),
term_sums, the gradient of Σ coefficient · sum; for validation compute_properties with forces — into
one aten graph; torch.compile(dynamic=True) turns it into fused C++ (or CUDA) kernels.  The
parameters and buffers are inputs of the graph, so one graph serves every optimiser step and the EMA
copy, and the atom, edge and structure counts are symbols, so it serves every batch
(benchmarks/compiled_training.py: the step 1.9x faster than eager on ethanol, equal to 1e-13).
What the step returns (the term sums, the energies for the shift fit, the gradients written into
.grad) is what the eager step leaves behind, so gradient summation over ranks, clipping, Adam and
EMA are the same code in both modes.  Compiling takes a few minutes on a cold cache; inductor keeps
its results in TORCHINDUCTOR_CACHE_DIR (by default /tmp/torchinductor_$USER), and since no value of
the model or the data is a constant of the graphs, every later run of the same architecture —
another seed, split or dataset — finds them there and compiles in seconds.
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ictp_model.data.graph import AtomicGraph
from ictp_model.device import INDUCTOR_OPTIONS
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
# what a prediction reads, and what it returns besides virial and stress
PREDICTION_FIELDS = ("positions", "cell", "edge_index", "shifts", "batch")
PREDICTED = ("node_energy", "energy", "forces")


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
    """graph -> (the active terms' sums, predicted energies); the network's parameters and
    buffers are swapped for the graph's inputs by functional_call."""

    def __init__(self, network: nn.Module, loss: LossConfig, stress: bool, terms: tuple[str, ...]):
        super().__init__()
        self.network, self.loss, self.stress, self.terms = network, loss, stress, terms

    def forward(self, graph: AtomicGraph, species: Tensor, num_atoms: Tensor) -> tuple[list[Tensor], Tensor]:
        pred = compute_properties(self.network, graph, forces=True, stress=self.stress, training=True, species=species)
        sums = term_sums(pred, graph, self.loss, num_atoms)
        return [sums[t] for t in self.terms], pred["energy"]


class _Properties(nn.Module):
    """graph -> [the properties evaluation returns] (energies, forces and, asked, virial and stress)."""

    def __init__(self, network: nn.Module, stress: bool):
        super().__init__()
        self.network, self.keys = network, PREDICTED + (("virial", "stress") if stress else ())

    def forward(self, graph: AtomicGraph, species: Tensor) -> list[Tensor]:
        pred = compute_properties(self.network, graph, forces=True, stress="stress" in self.keys, species=species)
        return [pred[k] for k in self.keys]


class _TracedGraphs:
    """One traced and compiled graph per key.  Every parameter and buffer of the network is an
    input of the graph (none is a constant in it), so a graph serves any network of the same
    architecture — the trained one and its EMA copy, before and after the energy shift is refitted,
    any dataset's n̄ and energy scale — and inductor's cache serves every later run of it."""

    what = ""

    def __init__(self, network: nn.Module, log: Callable[[str], None]):
        self.log = log
        self.parameter_names = [name for name, _ in network.named_parameters()]
        self.buffer_names = [name for name, _ in network.named_buffers()]
        self._graphs: dict[tuple, tuple[Callable, list[int]]] = {}

    def _run(self, key: tuple, network: nn.Module, inputs: list[Tensor], trace: Callable) -> tuple:
        state = [p.detach() for p in network.parameters()] + list(network.buffers())
        first = key not in self._graphs
        started = time.perf_counter()
        try:
            if first:
                self._graphs[key] = trace(network, state, inputs)
            compiled, used = self._graphs[key]
            with torch.no_grad(), _compile_threads(), _distinct_sizes():
                out = compiled(*state, *inputs)
        except Exception as error:
            if not first or isinstance(error, torch.cuda.OutOfMemoryError):  # not the compiler's fault
                raise
            raise CompileFailed(
                f"compiling the {self.what} failed ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}). It needs a C++ "
                "compiler (for CUDA also triton) that torch's inductor can call; compile: false trains "
                "the same model everywhere"
            ) from error
        if first:
            self.log(f"{self.what} compiled in {time.perf_counter() - started:.1f} s (inductor cache {cache_folder()})")
        return out, used

    def _state_dict(self, args: tuple) -> dict[str, Tensor]:
        names = self.parameter_names + self.buffer_names
        return {f"network.{name}": value for name, value in zip(names, args[: len(names)])}


class CompiledStep(_TracedGraphs):
    """step(graph, species, num_atoms, factors) -> (term sums, energies (G,), gradients): the
    gradients of Σ_t factors[t] · sum_t with respect to network.parameters() (None where the loss
    does not depend on a parameter, as autograd leaves .grad)."""

    what = "training step"

    def __init__(self, network: nn.Module, loss: LossConfig, stress: bool, log: Callable[[str], None] = print):
        super().__init__(network, log)
        self.network, self.loss, self.stress = network, loss, stress

    def __call__(
        self, graph: AtomicGraph, species: Tensor, num_atoms: Tensor, factors: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], Tensor, list[Optional[Tensor]]]:
        terms = tuple(active_terms(graph, self.loss))
        fields = tuple(f for f in GRAPH_FIELDS if getattr(graph, f) is not None)
        inputs = [getattr(graph, f) for f in fields] + [species, num_atoms, torch.stack([factors[t] for t in terms])]

        def trace(network: nn.Module, state: list[Tensor], inputs: list[Tensor]):
            return self._trace(network, terms, fields, state, inputs)

        out, used = self._run((terms, fields), self.network, inputs, trace)
        gradients: list[Optional[Tensor]] = [None] * len(self.parameter_names)
        for index, gradient in zip(used, out[len(terms) + 1 :]):
            gradients[index] = gradient
        return dict(zip(terms, out[: len(terms)])), out[len(terms)], gradients

    def _trace(self, network: nn.Module, terms: tuple, fields: tuple, state: list[Tensor], inputs: list[Tensor]):
        module = _TermSums(network, self.loss, self.stress, terms)
        count, start, used = len(self.parameter_names), len(state), []

        def step(*args):
            weights = [p.requires_grad_(True) for p in args[:count]]
            species, num_atoms, factors = args[start + len(fields) :]
            graph = _graph(fields, args[start : start + len(fields)], species)
            sums, energy = torch.func.functional_call(module, self._state_dict(args), (graph, species, num_atoms))
            loss = factors[0] * sums[0]
            for k in range(1, len(sums)):
                loss = loss + factors[k] * sums[k]
            gradients = torch.autograd.grad([loss], weights, allow_unused=True)
            used[:] = [i for i, g in enumerate(gradients) if g is not None]
            return (*[s.detach() for s in sums], energy.detach(), *[g for g in gradients if g is not None])

        return _compile(network, step, [t.clone() for t in state[:count]] + state[count:] + inputs), used


class CompiledPrediction(_TracedGraphs):
    """predict(network, graph, species, stress) -> the dict compute_properties(network, graph,
    forces=True, stress=stress) returns, from a compiled graph (validation during training: the
    forward and the forces, one backward)."""

    what = "validation"

    def __call__(self, network: nn.Module, graph: AtomicGraph, species: Tensor, stress: bool) -> dict[str, Tensor]:
        fields = PREDICTION_FIELDS
        module = _Properties(network, stress)

        def trace(network: nn.Module, state: list[Tensor], inputs: list[Tensor]):
            def predict(*args):
                values = args[len(state) :]
                return torch.func.functional_call(
                    module, self._state_dict(args), (_graph(fields, values[:-1], values[-1]), values[-1])
                )

            return _compile(network, predict, state + inputs), []

        inputs = [getattr(graph, f) for f in fields] + [species]
        out, _ = self._run((stress,), network, inputs, trace)
        return dict(zip(module.keys, out))


def use_cache_folder(folder: Optional[str]) -> None:
    """Inductor's cache in ``folder`` for this process (None: leave TORCHINDUCTOR_CACHE_DIR, or
    torch's default, as it is).  Inductor reads the variable whenever it looks up its cache."""
    if folder is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder).expanduser().resolve())


def cache_folder() -> str:
    """The folder inductor's cache is in now."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


def _graph(fields: tuple[str, ...], values, species: Tensor) -> AtomicGraph:
    """The AtomicGraph a traced function rebuilds from its inputs (species stand in for the atomic
    numbers, which the traced network never reads)."""
    present = dict(zip(fields, values))
    return AtomicGraph(numbers=species, pbc=None, num_graphs=present["cell"].shape[0], **present)


def _compile(network: nn.Module, function: Callable, example: list[Tensor]) -> Callable:
    """make_fx with symbolic sizes (one aten graph, autograd included), then inductor."""
    from torch.fx.experimental.proxy_tensor import make_fx

    with ungrouped_species(network), _distinct_sizes():
        traced = make_fx(function, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    return torch.compile(traced, backend="inductor", dynamic=True, options=INDUCTOR_OPTIONS)


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
