"""FPGA devices: how many DSPs, BRAM18s, URAMs, LUTs and flip-flops a budget can spend.

Figures are from AMD/Xilinx product tables (BRAM is counted in 18 Kb halves, as HLS reports do). Users add
their own parts with `register_device`; lookups accept a full part number such as `xcvu13p-flga2577-2-e`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tenfold.errors import ConfigError

RESOURCES = ("dsp", "bram18", "uram", "lut", "ff")


@dataclass(frozen=True)
class Device:
    """One FPGA part and the resources it offers."""

    name: str
    dsp: int
    bram18: int
    lut: int
    ff: int
    uram: int = 0
    dsp_type: str = "DSP48E2"
    family: str = "UltraScale+"
    part: str = ""
    board: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def dsp_multiplier_width(self) -> tuple[int, int]:
        """Widths (a, b) of one DSP multiplier: 27×18 on DSP48E2, 25×18 on DSP48E1."""
        return (25, 18) if self.dsp_type == "DSP48E1" else (27, 18)

    def capacity(self, resource: str) -> int:
        """Available amount of `resource` (one of dsp, bram18, uram, lut, ff)."""
        if resource not in RESOURCES:
            raise ConfigError(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
        return int(getattr(self, resource))

    def as_dict(self) -> dict[str, int]:
        return {resource: self.capacity(resource) for resource in RESOURCES}


_CATALOGUE: dict[str, Device] = {}
_ALIASES: dict[str, str] = {}


def register_device(device: Device, *, replace: bool = False) -> Device:
    """Add a part to the catalogue (e.g. a newer or smaller FPGA); refuses to shadow one silently."""
    key = device.name.lower()
    if key in _CATALOGUE and not replace:
        raise ConfigError(f"device {device.name!r} is already registered; pass replace=True to redefine it")
    for value, label in ((device.dsp, "dsp"), (device.bram18, "bram18"), (device.lut, "lut"), (device.ff, "ff")):
        if value < 0:
            raise ConfigError(f"device {device.name!r}: {label} must be >= 0, got {value}")
    if device.dsp_type not in {"DSP48E1", "DSP48E2", "DSP58"}:
        raise ConfigError(f"device {device.name!r}: dsp_type must be DSP48E1, DSP48E2 or DSP58")
    _CATALOGUE[key] = device
    for alias in (*device.aliases, device.part):
        if alias:
            _ALIASES[alias.lower()] = key
    return device


def get_device(name: str | Device) -> Device:
    """Look a device up by name, alias, board or full part number (`xcvu13p-flga2577-2-e`)."""
    if isinstance(name, Device):
        return name
    key = str(name).strip().lower()
    if key in _CATALOGUE:
        return _CATALOGUE[key]
    if key in _ALIASES:
        return _CATALOGUE[_ALIASES[key]]
    for known in sorted(_CATALOGUE, key=len, reverse=True):  # a full part number starts with the device name
        if key.startswith(known):
            return _CATALOGUE[known]
    raise ConfigError(
        f"unknown device {name!r}; known devices: {', '.join(list_devices())}. "
        "Add your own with tenfold.hardware.register_device(Device(...))."
    )


def list_devices() -> list[str]:
    """Names of the registered devices."""
    return sorted(_CATALOGUE)


def with_overrides(device: Device, **changes: int) -> Device:
    """A copy of `device` with some capacities changed (e.g. what is left after other logic)."""
    return dataclasses.replace(device, **changes)


for _device in (
    Device("xc7z020", dsp=220, bram18=280, lut=53_200, ff=106_400, dsp_type="DSP48E1", family="Zynq-7000",
           part="xc7z020clg400-1", board="Pynq-Z2", aliases=("pynq-z2", "pynq")),
    Device("xc7a100t", dsp=240, bram18=270, lut=63_400, ff=126_800, dsp_type="DSP48E1", family="Artix-7",
           part="xc7a100tcsg324-1", board="Arty A7-100"),
    Device("xczu7ev", dsp=1_728, bram18=624, lut=230_400, ff=460_800, uram=96, family="Zynq UltraScale+",
           part="xczu7ev-ffvc1156-2-e", board="ZCU104", aliases=("zcu104",)),
    Device("xczu9eg", dsp=2_520, bram18=1_824, lut=274_080, ff=548_160, family="Zynq UltraScale+",
           part="xczu9eg-ffvb1156-2-e", board="ZCU102", aliases=("zcu102",)),
    Device("xcku115", dsp=5_520, bram18=4_320, lut=663_360, ff=1_326_720, dsp_type="DSP48E2",
           family="Kintex UltraScale", part="xcku115-flvb2104-2-i"),
    Device("xcvu9p", dsp=6_840, bram18=4_320, lut=1_182_240, ff=2_364_480, uram=960, family="Virtex UltraScale+",
           part="xcvu9p-flga2104-2l-e", board="VCU118", aliases=("vcu118",)),
    Device("xcvu13p", dsp=12_288, bram18=5_376, lut=1_728_000, ff=3_456_000, uram=1_280,
           family="Virtex UltraScale+", part="xcvu13p-flga2577-2-e"),
    Device("xcu250", dsp=12_288, bram18=5_376, lut=1_728_000, ff=3_456_000, uram=1_280, family="Alveo",
           part="xcu250-figd2104-2l-e", board="Alveo U250", aliases=("u250", "alveo-u250", "alveo_u250")),
    Device("xcu50", dsp=5_952, bram18=2_688, lut=872_000, ff=1_743_000, uram=640, family="Alveo",
           part="xcu50-fsvh2104-2-e", board="Alveo U50", aliases=("u50", "alveo-u50", "alveo_u50")),
):
    register_device(_device)

DEFAULT_DEVICE = "xcvu13p"  # hls4ml's default part
