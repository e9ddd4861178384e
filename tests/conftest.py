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
