"""Tensor decompositions of layer weights for FPGA compression: float and fixed-point CP-ALS, Tucker/HOOI.

`cp_als(weight, rank)` factorises a weight tensor into rank-one terms; `quantized_cp_als(weight, rank,
"fixed<8,1>")` keeps the factors on an ap_fixed grid while ALS converges (Nekooei & Safari, 2022), with
`round_after_als` as the round-once baseline; `tucker_hooi`, `tucker2` and `quantized_tucker` are the Tucker
counterparts. `cp_reshape` / `cp_unreshape` turn conv kernels into the tensor to decompose and back.

`decompose_model(model, ranks, precision="fixed<8,1>")` replaces a network's Linear/Conv layers by
fixed-point factors (same layers with rebuilt weights, or sequences of small layers) and reports the savings;
`materialize` turns the result back into plain layers for export.
"""

from __future__ import annotations

from tenfold.decompose.accounting import (
    METHODS as DECOMPOSE_METHODS,
)
from tenfold.decompose.accounting import (
    LayerAccount,
    ModelAccount,
    account_layer,
    account_model,
    accounting_method,
    decomposable_layers,
    decomposed_shape,
    khatri_rao_multiplications,
    regenerated_layer_resources,
)
from tenfold.decompose.cp import CPResult, CPTensor, cp_als, cp_reshape, cp_unreshape, khatri_rao
from tenfold.decompose.grid import FactorGrid, as_factor_grid
from tenfold.decompose.init import leading_left_singular_vectors, random_factors, svd_factors, unfold
from tenfold.decompose.layers import (
    DecomposedWeight,
    FactorizedLayer,
    OnGrid,
    compose_weight,
    decompose_layer,
    decompose_weight,
    factor_shapes,
    layer_from_result,
)
from tenfold.decompose.model import (
    DecomposedLayer,
    DecompositionReport,
    LayerReport,
    decompose_model,
    decomposed_layers,
    materialize,
    rank_for_ratio,
    requantize_,
)
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
from tenfold.decompose.ranks import (
    InfeasibleRankTargetError,
    PlanRow,
    RankPlan,
    RankTarget,
    TargetLimit,
    select_ranks,
)
from tenfold.decompose.recipe import apply_decomposition_recipe_, decomposition_recipe
from tenfold.decompose.refine import RefineReport, refine_factors, settle_decomposed
from tenfold.decompose.sensitivity import (
    DEFAULT_RATIOS,
    LayerSensitivity,
    RankCandidate,
    RankSensitivity,
    SensitivityConfig,
    rank_ladder,
    rank_sensitivity,
    reconstruct_weight,
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
    "DECOMPOSE_METHODS",
    "DEFAULT_RATIOS",
    "SCALE_MODES",
    "CPResult",
    "CPTensor",
    "DecomposedLayer",
    "DecomposedWeight",
    "DecompositionReport",
    "FactorGrid",
    "FactorizedLayer",
    "InfeasibleRankTargetError",
    "LayerAccount",
    "LayerReport",
    "LayerSensitivity",
    "ModelAccount",
    "OnGrid",
    "PlanRow",
    "QuantizedCPResult",
    "QuantizedTuckerResult",
    "RankCandidate",
    "RankPlan",
    "RankSensitivity",
    "RankTarget",
    "RefineReport",
    "SensitivityConfig",
    "TargetLimit",
    "TuckerResult",
    "TuckerTensor",
    "absorb_weights",
    "account_layer",
    "account_model",
    "accounting_method",
    "apply_decomposition_recipe_",
    "as_factor_grid",
    "as_precision",
    "compose_weight",
    "cp_als",
    "cp_reshape",
    "cp_unreshape",
    "decomposable_layers",
    "decompose_layer",
    "decompose_model",
    "decompose_weight",
    "decomposed_layers",
    "decomposed_shape",
    "decomposition_recipe",
    "factor_shapes",
    "grid_exponents",
    "khatri_rao",
    "khatri_rao_multiplications",
    "layer_from_result",
    "leading_left_singular_vectors",
    "materialize",
    "mode_product",
    "project_error_feedback",
    "project_to_grid",
    "quantized_cp_als",
    "quantized_tucker",
    "random_factors",
    "rank_for_ratio",
    "rank_ladder",
    "rank_sensitivity",
    "reconstruct_weight",
    "refine_factors",
    "regenerated_layer_resources",
    "requantize_",
    "round_after_als",
    "select_ranks",
    "settle_decomposed",
    "svd_factors",
    "tucker2",
    "tucker_hooi",
    "unfold",
]
