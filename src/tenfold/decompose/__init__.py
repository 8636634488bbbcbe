"""Tensor decompositions of layer weights for FPGA compression: float and fixed-point CP-ALS, Tucker/HOOI.

`cp_als(weight, rank)` factorises a weight tensor into rank-one terms; `quantized_cp_als(weight, rank,
"fixed<8,1>")` keeps the factors on an ap_fixed grid while ALS converges (Nekooei & Safari, 2022), with
`round_after_als` as the round-once baseline; `tucker_hooi`, `tucker2` and `quantized_tucker` are the Tucker
counterparts. `cp_reshape` / `cp_unreshape` turn conv kernels into the tensor to decompose and back.
"""

from __future__ import annotations

from tenfold.decompose.cp import CPResult, CPTensor, cp_als, cp_reshape, cp_unreshape, khatri_rao
from tenfold.decompose.init import leading_left_singular_vectors, random_factors, svd_factors, unfold
from tenfold.decompose.quantized import (
    SCALE_MODES,
    QuantizedCPResult,
    absorb_weights,
    as_precision,
    grid_exponents,
    project_error_feedback,
    project_to_grid,
    quantized_cp_als,
    round_after_als,
)
from tenfold.decompose.tucker import (
    QuantizedTuckerResult,
    TuckerResult,
    TuckerTensor,
    mode_product,
    quantized_tucker,
    tucker2,
    tucker_hooi,
)

__all__ = [
    "SCALE_MODES",
    "CPResult",
    "CPTensor",
    "QuantizedCPResult",
    "QuantizedTuckerResult",
    "TuckerResult",
    "TuckerTensor",
    "absorb_weights",
    "as_precision",
    "cp_als",
    "cp_reshape",
    "cp_unreshape",
    "grid_exponents",
    "khatri_rao",
    "leading_left_singular_vectors",
    "mode_product",
    "project_error_feedback",
    "project_to_grid",
    "quantized_cp_als",
    "quantized_tucker",
    "random_factors",
    "round_after_als",
    "svd_factors",
    "tucker2",
    "tucker_hooi",
    "unfold",
]
