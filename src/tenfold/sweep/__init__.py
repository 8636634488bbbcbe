"""Design-space sweeps over `tenfold run` recipes on Ray Tune (`tenfold sweep SWEEP.yaml`).

Ray is optional: this package imports without it, and `run_sweep` says how to install it when missing.
"""

from __future__ import annotations

from tenfold.sweep.config import Dimension, SweepConfig, load_sweep_config, sweep_config_from_dict
from tenfold.sweep.results import SweepReport, TrialOutcome
from tenfold.sweep.runner import INSTALL_HINT, DistributedUnavailable, run_sweep

__all__ = ["INSTALL_HINT", "Dimension", "DistributedUnavailable", "SweepConfig", "SweepReport", "TrialOutcome",
           "load_sweep_config", "run_sweep", "sweep_config_from_dict"]
