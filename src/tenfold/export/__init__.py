"""Export compressed models: hls4ml projects with a bit-exact C-simulation check, HLS C++ that regenerates
CP-decomposed weights on chip (checked bit for bit against Python), and ONNX checked with onnxruntime."""

from __future__ import annotations

from tenfold.export.hls4ml_project import (
    CheckReport,
    ExportError,
    Hls4mlProject,
    check_bit_exact,
    export_hls4ml,
    hls4ml_config,
)
from tenfold.export.hls_cp import CPCheckReport, CPProject, check_cp_export, export_cp_layer, export_cp_model
from tenfold.export.onnx_export import OnnxReport, export_onnx

__all__ = ["CPCheckReport", "CPProject", "CheckReport", "ExportError", "Hls4mlProject", "OnnxReport",
           "check_bit_exact", "check_cp_export", "export_cp_layer", "export_cp_model", "export_hls4ml",
           "export_onnx", "hls4ml_config"]
