"""tenfold: fit trained PyTorch networks onto FPGAs.

Resource-aware structured pruning (a knapsack under an FPGA budget) and quantized tensor
decomposition, priced by an hls4ml-faithful hardware model and exported to hls4ml.
"""

from __future__ import annotations

from tenfold.errors import CheckpointError, ConfigError, DataError, ModelError, TenfoldError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelError",
    "TenfoldError",
    "__version__",
]
