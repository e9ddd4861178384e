"""Irreducible Cartesian tensor algebra: pure functions on tensors whose last l axes have size 3
(dense storage) or whose last axis has size 2l+1 (compact storage)."""

from .basis import (
    compact_dim,
    dense_dim,
    harmonics_matrix,
    stf_basis,
    storage_dim,
    storage_embedding,
    to_compact,
    to_dense,
)
from .constants import even_product_constant, harmonic_constant
from .coupling import compact_product, coupling_tensor
from .harmonics import (
    cartesian_harmonics,
    flat_outer_powers,
    outer_power,
    unit_vectors,
)
from .irreducible import detrace, stf_project, symmetrize, symmetry_error, trace_error
from .paths import product_paths
from .product import (
    contract,
    irreducible_product,
    is_odd_path,
    odd_product_constant,
    path_constant,
    product_unnormalized,
)
from .transform import compact_rotation, random_o3, rotate

__all__ = [
    "cartesian_harmonics",
    "flat_outer_powers",
    "compact_dim",
    "compact_product",
    "compact_rotation",
    "contract",
    "coupling_tensor",
    "dense_dim",
    "detrace",
    "even_product_constant",
    "harmonic_constant",
    "harmonics_matrix",
    "irreducible_product",
    "is_odd_path",
    "odd_product_constant",
    "outer_power",
    "path_constant",
    "product_paths",
    "product_unnormalized",
    "random_o3",
    "rotate",
    "stf_basis",
    "stf_project",
    "storage_dim",
    "storage_embedding",
    "symmetrize",
    "symmetry_error",
    "to_compact",
    "to_dense",
    "trace_error",
    "unit_vectors",
]
