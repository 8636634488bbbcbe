"""Resource-aware structured pruning: FPGA structures, their cost and importance, a knapsack under a budget.

`prune(model, train, val, input_shape, hls_config, PruneConfig(budget="dsp<=0.1x"))` returns a masked copy
of the model and a step-by-step report; `shrink` turns neuron/filter pruning into a narrower model.
"""

from __future__ import annotations

from tenfold.prune.budget import Budget, Limit
from tenfold.prune.coupling import Coupling, trace_couplings
from tenfold.prune.importance import structure_values, weight_saliency
from tenfold.prune.masks import (
    GroupLasso,
    MaskedFinetune,
    apply_masks,
    current_masks,
    ensure_mask_buffers,
    remove_masks,
    sparsity,
)
from tenfold.prune.physical import shrink
from tenfold.prune.pruner import BudgetInfeasible, PruneConfig, Pruner, PruneReport, PruneResult, StepRecord, prune
from tenfold.prune.schedule import Schedule
from tenfold.prune.structures import STRUCTURES, LayerStructures, StructureSet, build_structures, structure_masks

__all__ = [
    "STRUCTURES",
    "Budget",
    "BudgetInfeasible",
    "Coupling",
    "GroupLasso",
    "LayerStructures",
    "Limit",
    "MaskedFinetune",
    "PruneConfig",
    "PruneReport",
    "PruneResult",
    "Pruner",
    "Schedule",
    "StepRecord",
    "StructureSet",
    "apply_masks",
    "build_structures",
    "current_masks",
    "ensure_mask_buffers",
    "prune",
    "remove_masks",
    "shrink",
    "sparsity",
    "structure_masks",
    "structure_values",
    "trace_couplings",
    "weight_saliency",
]
