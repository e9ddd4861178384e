"""Data sets of labelled graphs that the training loop indexes: in memory, or streamed from HDF5
shards (`ictp_model.data.shards`). Both give graphs by index plus what evaluation needs to know
about a structure besides its tensors."""

from typing import NamedTuple, Protocol

import torch

from .graph import AtomicGraph, graph_from_atoms
from .io import Sample


class StructureInfo(NamedTuple):
    """What a labelled graph does not say: its group for metrics and which labels are real
    (missing forces/stress are stored as zeros so that batches always carry every field)."""

    config_type: str
    has_forces: bool
    has_stress: bool


class GraphDataset(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> AtomicGraph: ...

    def info(self, index: int) -> StructureInfo: ...


class InMemoryDataset:
    """Graphs built once and kept in memory."""

    def __init__(self, graphs: list[AtomicGraph], infos: list[StructureInfo]) -> None:
        self.graphs, self.infos = graphs, infos

    @classmethod
    def from_samples(cls, samples: list[Sample], cutoff: float, dtype: torch.dtype) -> "InMemoryDataset":
        graphs = [
            graph_from_atoms(s.atoms, cutoff, dtype, s.energy, s.forces, s.stress, s.weight, labelled=True)
            for s in samples
        ]
        infos = [StructureInfo(s.config_type, s.forces is not None, s.stress is not None) for s in samples]
        return cls(graphs, infos)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> AtomicGraph:
        return self.graphs[index]

    def info(self, index: int) -> StructureInfo:
        return self.infos[index]
