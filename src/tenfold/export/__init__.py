"""Export compressed models: hls4ml projects with a bit-exact C-simulation check."""

from __future__ import annotations

from tenfold.export.hls4ml_project import (
    CheckReport,
    ExportError,
    Hls4mlProject,
    check_bit_exact,
    export_hls4ml,
    hls4ml_config,
)

__all__ = ["CheckReport", "ExportError", "Hls4mlProject", "check_bit_exact", "export_hls4ml", "hls4ml_config"]
