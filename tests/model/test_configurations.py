"""Unusual but valid hyperparameters build, run and stay O(3)-invariant."""

import pytest
import torch

from ictp_model.tensor import random_o3

from .structures import evaluate, organic_molecule, small_model

CONFIGS = [
    dict(layers=1),
    dict(layers=3, max_rank=1),
    dict(correlation=1),
    dict(correlation=4, max_rank=1, edge_rank=2),
    dict(max_rank=0, edge_rank=2),
    dict(max_rank=3, edge_rank=1, odd=True),
    dict(max_rank=4, edge_rank=4, correlation=2, variant="full", odd=True),
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_configuration_runs_and_is_invariant(overrides):
    model = small_model(**overrides)
    atoms = organic_molecule()
    ref = evaluate(model, atoms)
    q = random_o3(reflection=True)
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.numpy().T
    out = evaluate(model, moved)
    assert torch.isfinite(ref["energy"]).all()
    assert torch.allclose(out["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(out["forces"], ref["forces"] @ q.T, atol=1e-10)
