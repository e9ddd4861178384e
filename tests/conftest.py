import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Fresh but reproducible random inputs for every test."""
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    yield


@pytest.fixture(scope="session")
def compiled_light(tmp_path_factory):
    """The light model (L = 1, l_max = 2, ν = 2; as tests/lammps' exported_light) compiled to a .pt2
    by `ictp export` once per session (~1-4 min), or a skip where no C++ compiler is found."""
    import shutil

    from ictp_model import save_model
    from ictp_model.cli.main import main

    from .model.structures import small_model

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler on PATH: AOTInductor cannot compile a .pt2")
    model = small_model(max_rank=1, edge_rank=2, correlation=2).eval()
    folder = tmp_path_factory.mktemp("pt2")
    save_model(model, folder / "model.pt")
    assert main(["export", "--model", str(folder / "model.pt"), "--out", str(folder / "model-lammps.pt2")]) == 0
    return model, folder / "model-lammps.pt2"


@pytest.fixture(scope="session")
def cuda():
    """'cuda', or a skip where torch sees no GPU (the GPU tests run on a GPU machine, not in CI)."""
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}, no GPU visible" if torch.version.cuda else "a CPU-only build"
        pytest.skip(f"no CUDA GPU (torch {torch.__version__} is {build})")
    return "cuda"


@pytest.fixture(scope="session")
def compiled_light_cuda(cuda, tmp_path_factory):
    """compiled_light's model compiled for CUDA by `ictp export --device cuda`."""
    from ictp_model import save_model
    from ictp_model.cli.main import main

    from .model.structures import small_model

    model = small_model(max_rank=1, edge_rank=2, correlation=2).eval()
    folder = tmp_path_factory.mktemp("pt2_cuda")
    save_model(model, folder / "model.pt")
    out = folder / "model-lammps-cuda.pt2"
    assert main(["export", "--model", str(folder / "model.pt"), "--out", str(out), "--device", cuda]) == 0
    return model, out
