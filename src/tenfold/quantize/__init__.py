"""Fixed-point quantization with ap_fixed semantics: fake quantization, QAT, post-training calibration,
per-layer precision search, and bit-exact emulation of hls4ml's arithmetic."""

from __future__ import annotations

from tenfold.quantize.calibrate import (
    PrecisionOverflowError,
    ValueRange,
    find_overflows,
    integer_bits_for,
    observe_ranges,
    raise_on_overflow,
)
from tenfold.quantize.emulate import emulate, quantize_weights_
from tenfold.quantize.fake import FakeQuant, fake_quantize, fixed_point_codes, quantize_tensor
from tenfold.quantize.ptq import PTQResult, calibrated_config, post_training_quantize, widen_to_fit
from tenfold.quantize.qat import QATReport, QATResult, copy_trained_weights, hardware_accuracy, qat
from tenfold.quantize.quantized_model import (
    QuantizedModel,
    QuantizerSite,
    quantize_model,
    strip_quantization,
    to_float,
)
from tenfold.quantize.search import DEFAULT_WIDTHS, PrecisionSearchReport, SearchStep, search_precision

__all__ = [
    "DEFAULT_WIDTHS",
    "FakeQuant",
    "PTQResult",
    "PrecisionOverflowError",
    "PrecisionSearchReport",
    "QATReport",
    "QATResult",
    "QuantizedModel",
    "QuantizerSite",
    "SearchStep",
    "ValueRange",
    "calibrated_config",
    "copy_trained_weights",
    "emulate",
    "fake_quantize",
    "find_overflows",
    "fixed_point_codes",
    "hardware_accuracy",
    "integer_bits_for",
    "observe_ranges",
    "post_training_quantize",
    "qat",
    "quantize_model",
    "quantize_tensor",
    "quantize_weights_",
    "raise_on_overflow",
    "search_precision",
    "strip_quantization",
    "to_float",
    "widen_to_fit",
]
