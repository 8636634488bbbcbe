"""Recipes that chain tenfold's steps: the demo now, `tenfold run` from a config file later."""

from __future__ import annotations

from tenfold.pipeline.demo import DemoConfig, DemoModelResult, DemoResult, run_demo
from tenfold.pipeline.outdir import prepare_output_dir

__all__ = ["DemoConfig", "DemoModelResult", "DemoResult", "prepare_output_dir", "run_demo"]
