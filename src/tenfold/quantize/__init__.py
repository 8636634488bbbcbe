"""Fixed-point quantization with ap_fixed semantics, and bit-exact emulation of hls4ml's arithmetic."""

from __future__ import annotations

from tenfold.quantize.emulate import emulate, quantize_weights_

__all__ = ["emulate", "quantize_weights_"]
