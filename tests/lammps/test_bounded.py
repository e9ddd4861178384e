"""`pair_style ictp memory M` (chunks of atoms, bounded memory) equals the plain evaluation in
LAMMPS, for every variant, on 1 and 2 ranks (float64, 1e-10 relative)."""

import numpy as np
import pytest
import torch
from torch import Tensor

from ictp_export import export_model, load_exported
from ictp_model.model.bounded import BoundedEvaluation

from ..model.structures import VARIANTS, small_model, triclinic_cell
from .helpers import evaluate_in_lammps, write_data
from .test_errors import run_lmp
from .test_mpi import run
from .test_pair_ictp import cubic_cell

TIGHT = dict(rtol=1e-10, atol=1e-11)


def budget_for(model, edges: int) -> str:
    """The `memory` value (MiB) that gives chunks of about ``edges`` edges."""
    return f"{edges * BoundedEvaluation(model).bytes_per_edge / 2**20:.6g}"


@pytest.fixture(scope="module", params=VARIANTS)
def variant_export(request, tmp_path_factory):
    model = small_model(variant=request.param, odd=True)
    path = tmp_path_factory.mktemp("bounded") / "model-lammps.pt"
    export_model(model, path)
    return model, path


@pytest.mark.parametrize("make", [triclinic_cell, cubic_cell], ids=["triclinic", "cubic"])
def test_chunked_equals_plain_in_lammps(plugin, variant_export, tmp_path, make):
    model, path = variant_export
    atoms = make()
    order = ["H", "C", "N", "O"]
    plain = evaluate_in_lammps(plugin, path, atoms, order, tmp_path)
    chunked = evaluate_in_lammps(plugin, path, atoms, order, tmp_path, f"ictp memory {budget_for(model, 15)}")
    assert chunked["energy"] == pytest.approx(plain["energy"], rel=1e-10)
    for key in ["forces", "energies", "virial", "atom_virial"]:
        np.testing.assert_allclose(chunked[key], plain[key], **TIGHT, err_msg=key)


def test_chunked_on_one_and_two_ranks(plugin, exported_light, tmp_path):
    model, path = exported_light
    assert_chunked_md_equals_plain(plugin, path, path, f"ictp memory {budget_for(model, 20)}", tmp_path)


def assert_chunked_md_equals_plain(plugin, chunked_model, plain_model, style: str, tmp_path) -> None:
    """20 MD steps of a 32-atom cell with ``chunked_model`` under pair_style ``style`` on 1 and 2
    ranks equal ``plain_model`` evaluated all at once on 1 rank."""
    atoms = cubic_cell().repeat((2, 1, 1))
    atoms.rattle(0.02, seed=1)
    data = tmp_path / "cell.data"
    write_data(data, atoms, ["H", "C", "N", "O"])
    plain = run(1, plugin, plain_model, data, tmp_path / "plain.json", steps=20)
    one = run(1, plugin, chunked_model, data, tmp_path / "one.json", steps=20, pair_style=style)
    two = run(2, plugin, chunked_model, data, tmp_path / "two.json", steps=20, pair_style=style)
    for result in (one, two):
        assert result["energy"] == pytest.approx(plain["energy"], rel=1e-10)
        assert result["pressure"] == pytest.approx(plain["pressure"], rel=1e-9, abs=1e-6)
        np.testing.assert_allclose(result["forces"], plain["forces"], **TIGHT)
        np.testing.assert_allclose(result["per_atom"], plain["per_atom"], **TIGHT)
        np.testing.assert_allclose(result["positions"], plain["positions"], atol=1e-8)


class FormatVersion(torch.nn.Module):
    """An export that declares another interface version: version 1 had no memory argument."""

    elements: list[str]

    def __init__(self, exported, version: int):
        super().__init__()
        self.inner = exported
        self.format_version, self.cutoff, self.num_layers = version, exported.cutoff, exported.num_layers
        self.elements, self.dtype = list(exported.elements), exported.dtype

    def forward(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        shifts: Tensor,
        receivers: list[int],
        compute_virial: bool,
    ) -> dict[str, Tensor]:
        return self.inner(positions, species, edge_index, shifts, receivers, compute_virial)


def test_format_version_1_still_loads_and_a_newer_one_is_refused(plugin, exported, tmp_path):
    model, path = exported
    atoms = triclinic_cell()
    order = ["H", "C", "N", "O"]
    reference = evaluate_in_lammps(plugin, path, atoms, order, tmp_path)
    for version in (1, 3):
        old = tmp_path / f"model-v{version}.pt"
        torch.jit.save(torch.jit.script(FormatVersion(load_exported(path), version)), str(old))
        if version == 1:
            result = evaluate_in_lammps(plugin, old, atoms, order, tmp_path)
            assert result["energy"] == pytest.approx(reference["energy"], rel=1e-12)
            np.testing.assert_allclose(result["forces"], reference["forces"], **TIGHT)
        else:
            code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {old} H C N O"])
            assert code != 0 and "has format version 3, this plugin reads versions 1 to 2" in out, out[-1500:]
