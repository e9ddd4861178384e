"""Radial basis: Bessel functions times a polynomial envelope, and the radial MLP (docs/math.md §2.1)."""

import math

import torch
from torch import Tensor, nn


class BesselBasis(nn.Module):
    """sqrt(2/r_c) · sin(nπ r/r_c) / r for n = 1 … num_basis.  Shapes: (E,) -> (E, num_basis)."""

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / cutoff)
        self.register_buffer("frequencies", math.pi / cutoff * torch.arange(1, num_basis + 1, dtype=torch.float64))

    def forward(self, r: Tensor) -> Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r


class PolynomialEnvelope(nn.Module):
    """1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2}, x = r/r_c, and 0 beyond r_c.

    Its value and first two derivatives vanish at r_c, so energies and forces are smooth there.
    Shapes: (E,) -> (E,).
    """

    def __init__(self, cutoff: float, p: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: Tensor) -> Tensor:
        p = float(self.p)
        x = r / self.cutoff
        env = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return env * (x < 1.0).to(r.dtype)


class ScaledSiLU(nn.Module):
    """SiLU × 1.6765, which keeps unit second moment for unit-normal inputs."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x) * 1.6765


class ScaledLinear(nn.Module):
    """Bias-free y = x Wᵀ / sqrt(fan_in) with W ~ N(0, 1) as stored.

    Every weight of the model is stored at unit scale and normalised in the forward pass (as e3nn
    and MACE do): Adam moves each stored number by about lr per step, so this gives every layer
    the same relative step. Weights stored at N(0, 1/fan_in) would take sqrt(fan_in)-times larger
    relative steps (×8 at width 64), overshoot at lr 0.01 and force the LR schedule down.
    Shapes: (..., in) -> (..., out); weight (out, in) as in nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.norm = 1.0 / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight * self.norm)


class RadialMLP(nn.Module):
    """Bias-free MLP with scaled SiLU after every layer: (E, sizes[0]) -> (E, sizes[-1]).

    It is the trunk of the radial network; the last linear layer (hidden -> per-path, per-channel
    weights) lives with the block it feeds, so each block's weights come out contiguous.
    No biases, so zero radial input (edges beyond the cutoff) gives zero weights.
    """

    def __init__(self, sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(ScaledLinear(sizes[i], sizes[i + 1]))
            layers.append(ScaledSiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
