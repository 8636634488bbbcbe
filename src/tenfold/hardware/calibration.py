"""Calibrate the cost model on real HLS synthesis figures (hls4ml's own regression baselines).

The baselines were synthesised with random, unseeded weights, so each row is rebuilt as a PyTorch model
whose weights are drawn from the row's stated initialiser; the model's prediction is the mean over several
draws. The CSD-digit threshold (which constants take a DSP) is chosen by grid search on DSP error; LUT and
FF coefficients by non-negative least squares on the features the cost model already computes.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from tenfold.errors import DataError
from tenfold.hardware.cost import CostModel, CostParams
from tenfold.hardware.estimate import make_config
from tenfold.hardware.layers import extract_layers

METRICS = ("dsp", "bram18", "lut", "ff", "latency")
ACTIVATION_MODULES = {"ELU": nn.ELU, "LeakyReLU": nn.LeakyReLU, "PReLU": nn.PReLU, "ReLU": nn.ReLU,
                      "Sigmoid": nn.Sigmoid}


@dataclass
class BaselineRow:
    """One synthesis result with enough context to rebuild its model."""

    name: str
    backend: str
    tool_version: str
    io_type: str
    strategy: str
    reuse_factor: int
    precision: str
    description: str
    weight_init: str
    reported: dict[str, float]


def load_baselines(path: str | Path) -> list[BaselineRow]:
    """Vivado/Vitis rows of hls4ml-synthesis/baselines.csv (oneAPI rows report no usable DSP count)."""
    path = Path(path)
    if path.is_dir():
        path = path / "baselines.csv"
    if not path.exists():
        raise DataError(f"synthesis baselines not found at {path}; pass the hls4ml-synthesis folder or its CSV")
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    needed = {"backend", "DSP", "BRAM_18K", "LUT", "FF", "latency_max", "model_description", "weight_init"}
    if rows and not needed <= set(rows[0]):
        raise DataError(f"{path} lacks columns {sorted(needed - set(rows[0]))}")
    out = []
    for row in rows:
        if row["backend"] not in {"Vivado", "Vitis"} or not row["DSP"]:
            continue
        precision = re.search(r"fixed<(\d+),\s*(\d+)>", row["precision"])
        out.append(
            BaselineRow(
                name=f"{row['test_name']}[{row['test_params']}]",
                backend=row["backend"],
                tool_version=row["tool_version"],
                io_type=row["io_type"],
                strategy=row["strategy"],
                reuse_factor=int(row["reuse_factor"] or 1),
                precision=f"fixed<{precision.group(1)},{precision.group(2)}>" if precision else "fixed<16,6>",
                description=row["model_description"],
                weight_init=row["weight_init"],
                reported={
                    "dsp": float(row["DSP"]),
                    "bram18": float(row["BRAM_18K"]),
                    "lut": float(row["LUT"]),
                    "ff": float(row["FF"]),
                    "latency": float(row["latency_max"]),
                },
            )
        )
    return out


def build_model(row: BaselineRow) -> tuple[nn.Module, tuple[int, ...], Any] | None:
    """A PyTorch model matching the row, its input shape and a function that redraws its weights."""
    text = row.description
    if m := re.match(r"Dense\((\d+)->(\d+)", text):
        n_in, n_out = int(m.group(1)), int(m.group(2))
        act_name = next((name for name in ACTIVATION_MODULES if name in text.split("+")[-1]), None)
        if "relu activation" in text or "Activation(relu)" in text:
            act_name = "ReLU"
        elif "Activation(sigmoid)" in text:
            act_name = "Sigmoid"
        layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
        if act_name:
            layers.append(ACTIVATION_MODULES[act_name]())
        model = nn.Sequential(*layers)
        low, high = _uniform_limits(row.weight_init, n_in, n_out)
        return model, (n_in,), lambda g: _redraw(model, lambda shape: _uniform(shape, low, high, g))
    if m := re.match(r"Conv2D\(in (\d+)x(\d+)x(\d+), kernel (\d+)x(\d+), stride (\d+)x(\d+).*?(\d+) filters", text):
        h, w, c, kh, kw, sh, sw, filters = (int(v) for v in m.groups())
        model = nn.Sequential(nn.Conv2d(c, filters, (kh, kw), stride=(sh, sw), bias="no bias" not in text))
        std = float(re.search(r"stddev ([0-9.]+)", row.weight_init).group(1))
        return model, (c, h, w), lambda g: _redraw(model, lambda shape: torch.randn(shape, generator=g) * std)
    if m := re.match(r"DepthwiseConv([12])D\(in ([0-9x]+), kernel (\d+)", text):
        dims = int(m.group(1))
        sizes = [int(v) for v in m.group(2).split("x")]
        channels, spatial, k = sizes[-1], sizes[:-1], int(m.group(3))
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        model = nn.Sequential(conv(channels, channels, k, groups=channels))
        fan_in, fan_out = channels * k**dims, k**dims
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return model, (channels, *spatial), lambda g: _redraw(model, lambda shape: _uniform(shape, -limit, limit, g))
    if m := re.match(r"(Max|Average)Pooling([12])D\(in ([0-9x]+), pool (\d+)", text):
        kind, dims = m.group(1), int(m.group(2))
        sizes = [int(v) for v in m.group(3).split("x")]
        pool_size = int(m.group(4))
        pad = "same" in text
        if dims == 1:
            layer = (nn.MaxPool1d if kind == "Max" else nn.AvgPool1d)(pool_size, ceil_mode=pad)
        else:
            layer = (nn.MaxPool2d if kind == "Max" else nn.AvgPool2d)(pool_size, ceil_mode=pad)
        model = nn.Sequential(layer)
        return model, (sizes[-1], *sizes[:-1]), lambda g: None
    return None


def _uniform_limits(init: str, n_in: int, n_out: int) -> tuple[float, float]:
    if m := re.search(r"RandomUniform\(([-0-9.]+),\s*([-0-9.]+)\)", init):
        return float(m.group(1)), float(m.group(2))
    if "lecun" in init:
        limit = math.sqrt(3.0 / n_in)
    else:  # glorot_uniform, Keras' default
        limit = math.sqrt(6.0 / (n_in + n_out))
    return -limit, limit


def _uniform(shape: torch.Size, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _redraw(model: nn.Module, draw) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                module.weight.copy_(draw(module.weight.shape))
                if module.bias is not None:
                    module.bias.zero_()
            if isinstance(module, nn.PReLU):
                module.weight.zero_()


def predict_row(row: BaselineRow, params: CostParams, *, draws: int = 8, seed: int = 0) -> dict[str, float] | None:
    """Mean predicted DSP, BRAM18, LUT, FF and latency of `row` over `draws` weight draws."""
    built = build_model(row)
    if built is None:
        return None
    model, input_shape, redraw = built
    config = make_config(precision=row.precision, strategy=row.strategy, reuse_factor=row.reuse_factor,
                         io_type=row.io_type)
    cost_model = CostModel(params)
    generator = torch.Generator().manual_seed(seed)
    totals = np.zeros(5)
    for _ in range(draws):
        redraw(generator)
        cost = cost_model.estimate_specs(extract_layers(model, input_shape), config, validate_reuse=False)
        t = cost.totals
        totals += np.array([t["dsp"], t["bram18"], t["lut"], t["ff"], cost.latency_cycles])
    return dict(zip(METRICS, totals / draws, strict=True))


@dataclass
class CalibrationResult:
    """Fitted parameters and the error of every row, per resource."""

    params: CostParams
    rows: list[dict[str, Any]]

    def error_table(self) -> dict[str, dict[str, float]]:
        """Median and worst |relative error| per metric over rows where the report is non-zero."""
        table: dict[str, dict[str, float]] = {}
        for metric in METRICS:
            errors = [abs(r["predicted"][metric] - r["reported"][metric]) / r["reported"][metric]
                      for r in self.rows if r["reported"][metric] > 0]
            absolute = [abs(r["predicted"][metric] - r["reported"][metric]) for r in self.rows]
            table[metric] = {
                "rows": len(errors),
                "median_rel_error": float(np.median(errors)) if errors else float("nan"),
                "worst_rel_error": float(np.max(errors)) if errors else float("nan"),
                "median_abs_error": float(np.median(absolute)) if absolute else float("nan"),
            }
        return table


def _features(rows: list[BaselineRow], params: CostParams, fields: list[str], metric: str, draws: int) -> np.ndarray:
    """Each column: `metric` predicted with one linear coefficient set to 1 and the others to 0."""
    columns = []
    for field_name in fields:
        unit = _unit_params(params, field_name)
        columns.append([predict_row(row, unit, draws=draws)[metric] for row in rows])
    return np.array(columns).T


def _unit_params(params: CostParams, field_name: str) -> CostParams:
    zeroed = dataclasses.replace(
        params,
        lut_per_adder_bit=0.0,
        lut_per_mult_bit2=0.0,
        lut_per_output_bit=0.0,
        lut_per_window_bit=0.0,
        lut_per_stream_bit=0.0,
        lut_per_activation_bit=dict.fromkeys(params.lut_per_activation_bit, 0.0),
    )
    if field_name.startswith("act:"):
        zeroed.lut_per_activation_bit[field_name[4:]] = 1.0
        return zeroed
    return dataclasses.replace(zeroed, **{field_name: 1.0})


def _unit_ff_params(params: CostParams, field_name: str) -> CostParams:
    zeroed = dataclasses.replace(params, ff_per_lut=0.0, ff_per_dsp=0.0, ff_per_register_bit=0.0,
                                 ff_per_input_bit=0.0, ff_per_stream_bit=0.0)
    return dataclasses.replace(zeroed, **{field_name: 1.0})


def calibrate(rows: list[BaselineRow], *, draws: int = 8, base: CostParams | None = None) -> CalibrationResult:
    """Fit the cost model to `rows` and report the per-row prediction."""
    params = dataclasses.replace(base or CostParams())
    params.lut_per_activation_bit = dict(params.lut_per_activation_bit)
    usable = [row for row in rows if build_model(row) is not None]
    # 1. which constants take a DSP: grid search on the rows with weights
    weighted = [row for row in usable if row.reported["dsp"] > 0]
    best = None
    for threshold in range(2, 7):
        trial = dataclasses.replace(params, csd_dsp_threshold=threshold)
        errors = [abs(predict_row(r, trial, draws=draws)["dsp"] - r.reported["dsp"]) / r.reported["dsp"]
                  for r in weighted]
        score = float(np.median(errors)) if errors else 0.0
        if best is None or score < best[0]:
            best = (score, threshold)
    params.csd_dsp_threshold = best[1]
    # 2. LUT coefficients (non-negative least squares on relative error: rows weighted by 1/reported)
    activations = sorted({a for row in usable for a in ACTIVATION_MODULES if a in row.description} | {"ReLU"})
    lut_fields = ["lut_per_adder_bit", "lut_per_output_bit", "lut_per_window_bit", "lut_per_stream_bit"]
    lut_fields += [f"act:{a}" for a in activations]
    features = _features(usable, params, lut_fields, "lut", draws)
    target = np.array([row.reported["lut"] for row in usable])
    scale = 1.0 / np.maximum(target, 1.0)
    coefficients, _ = nnls(features * scale[:, None], target * scale)
    for field_name, value in zip(lut_fields, coefficients, strict=True):
        if field_name.startswith("act:"):
            params.lut_per_activation_bit[field_name[4:]] = float(value)
        else:
            setattr(params, field_name, float(value))
    # 3. FF = a·LUT + b·DSP + c·(bits held in pipeline and stream registers)
    ff_fields = ["ff_per_lut", "ff_per_dsp", "ff_per_register_bit", "ff_per_input_bit", "ff_per_stream_bit"]
    ff_features = np.array([
        [predict_row(row, _unit_ff_params(params, name), draws=draws)["ff"] for name in ff_fields] for row in usable
    ])
    ff_target = np.array([row.reported["ff"] for row in usable])
    ff_scale = 1.0 / np.maximum(ff_target, 1.0)
    ff_coefficients, _ = nnls(ff_features * ff_scale[:, None], ff_target * ff_scale)
    for name, value in zip(ff_fields, ff_coefficients, strict=True):
        setattr(params, name, float(value))
    result_rows = []
    for row in usable:
        result_rows.append({
            "name": row.name,
            "backend": f"{row.backend} {row.tool_version}",
            "io_type": row.io_type,
            "description": row.description,
            "reported": row.reported,
            "predicted": predict_row(row, params, draws=draws),
        })
    return CalibrationResult(params=params, rows=result_rows)
