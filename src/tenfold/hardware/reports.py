"""Read real Vivado/Vitis synthesis reports, so tenfold's resource estimate can be shown next to the truth.

Two report kinds are understood:

- ``csynth``: the HLS C-synthesis estimate, ``<top>_csynth.xml`` (Vivado HLS or Vitis HLS), found at
  ``<top>_prj/solution1/syn/report/`` in an hls4ml project. This is what ``hls_model.build(synth=True)`` makes.
- ``vivado_synth``: the logic-synthesis utilization table, ``vivado_synth.rpt``, that hls4ml's ``vsynth=True`` step
  writes with ``report_utilization``. Vivado reports block RAM as 36 Kb tiles; tenfold counts BRAM18, so the tile
  count is doubled (a lone RAMB18 is half a tile, so it is counted once, not twice).

Every field a report lacks is ``None``; a file that is missing, unreadable or not a report at all raises
:class:`~tenfold.errors.DataError` naming the path and what was expected.
"""

from __future__ import annotations

import math
import numbers
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenfold.errors import DataError

__all__ = [
    "COMPARED_FIELDS",
    "SynthesisReport",
    "compare",
    "find_reports",
    "load_report",
    "parse_csynth_xml",
    "parse_vivado_synth_rpt",
]

#: The quantities :func:`compare` lines up, in row order.
COMPARED_FIELDS = ("dsp", "bram18", "lut", "ff", "latency_max", "interval_max")

# Estimate keys tenfold itself uses (ModelCost.to_dict) that mean the same as a compared field.
_ESTIMATE_ALIASES = {
    "latency_max": ("latency_max", "latency_cycles", "latency"),
    "interval_max": ("interval_max", "ii_cycles", "interval", "ii"),
}

# csynth.xml resource tags -> SynthesisReport fields. Vivado HLS says DSP48E, Vitis HLS says DSP.
_XML_RESOURCES = {"BRAM_18K": "bram18", "DSP": "dsp", "DSP48E": "dsp", "FF": "ff", "LUT": "lut", "URAM": "uram"}

# report_utilization row labels (trailing '*' removed) -> field. "Slice" is the 7-series name, "CLB" UltraScale(+).
_RPT_LABELS = {
    "CLB LUTs": "lut",
    "Slice LUTs": "lut",
    "CLB Registers": "ff",
    "Slice Registers": "ff",
    "Registers": "ff",
    "Block RAM Tile": "bram_tile",
    "RAMB36/FIFO": "ramb36",
    "RAMB18": "ramb18",
    "URAM": "uram",
    "DSPs": "dsp",
}

# Tokens HLS writes where a number cannot be known (e.g. a loop with a data-dependent trip count).
_PLACEHOLDERS = {"", "undef", "-", "n/a", "na", "none", "?"}


@dataclass
class SynthesisReport:
    """The figures of one real synthesis report that tenfold can check its estimate against."""

    source: str
    kind: str  # "csynth" (HLS C-synthesis estimate) or "vivado_synth" (logic synthesis utilization)
    tool: str | None = None  # "Vivado HLS 2020.1", "Vitis HLS 2024.1", "Vivado v2020.1", ... when the file says so
    part: str | None = None
    clock_ns: float | None = None  # target clock period
    estimated_clock_ns: float | None = None
    dsp: float | None = None
    bram18: float | None = None
    lut: float | None = None
    ff: float | None = None
    uram: float | None = None
    latency_min: int | None = None
    latency_max: int | None = None
    interval_min: int | None = None
    interval_max: int | None = None
    available: dict[str, float] = field(default_factory=dict)  # device totals the report lists

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, for printing and saving next to an estimate."""
        return asdict(self)


# --------------------------------------------------------------------------- small helpers


def _number(text: str | None) -> float | None:
    """A finite number from report text, or None for placeholders such as 'undef' and anything unparseable."""
    if text is None:
        return None
    token = text.strip().replace(",", "")
    if token.lower() in _PLACEHOLDERS:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _integer(text: str | None) -> int | None:
    value = _number(text)
    return None if value is None else round(value)


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes; DataError (not OSError) when it is missing, a folder or unreadable."""
    if not path.exists():
        raise DataError(f"report file {path} does not exist; expected {what}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, expected {what} (load_report() accepts an hls4ml project folder)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read report file {path} ({exc}); expected {what}") from exc


def _tool_name(family: str | None, version: str | None) -> str | None:
    if not version:
        return None
    return f"{family} {version}" if family else f"HLS {version}"


def _family_from_version(version: str | None) -> str | None:
    """Vivado HLS ended with 2020.1 and Vitis HLS began with 2020.1, so only that year is ambiguous."""
    match = re.match(r"(\d{4})\.(\d+)", version or "")
    if not match:
        return None
    year, minor = int(match.group(1)), int(match.group(2))
    if year > 2020 or (year == 2020 and minor >= 2):
        return "Vitis HLS"
    if year < 2020:
        return "Vivado HLS"
    return None


# --------------------------------------------------------------------------- csynth.xml


_CSYNTH_WHAT = "an HLS C-synthesis report (<top>_csynth.xml from Vivado HLS or Vitis HLS)"


def parse_csynth_xml(path: str | Path) -> SynthesisReport:
    """Parse ``<top>_csynth.xml``: the HLS resource, latency and clock estimate hls4ml's own tests compare against.

    Reads ``UserAssignments`` (part, target clock), ``PerformanceEstimates`` (estimated clock, best/worst-case
    latency, interval min/max) and ``AreaEstimates`` (``Resources`` and ``AvailableResources``). Sections or
    values that are absent or ``undef`` give ``None``. The tool is named from ``ReportVersion``: "Vivado HLS"
    when resources use the ``DSP48E`` tag, "Vitis HLS" when they use ``DSP`` (or name a ``FlowTarget``).
    """
    return _parse_csynth(Path(path), family_hint=None)


def _parse_csynth(path: Path, family_hint: str | None) -> SynthesisReport:
    data = _read_bytes(path, _CSYNTH_WHAT)
    if not data.strip():
        raise DataError(f"report file {path} is empty; expected {_CSYNTH_WHAT}")
    try:
        root = ET.fromstring(data)  # bytes, so expat honours the file's own encoding declaration
    except ET.ParseError as exc:
        raise DataError(f"report file {path} is not valid XML ({exc}); expected {_CSYNTH_WHAT}") from exc
    for element in root.iter():  # tolerate a default namespace: compare local tag names only
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.rsplit("}", 1)[1]

    user = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    area = root.find("AreaEstimates")
    if perf is None and area is None:
        raise DataError(
            f"{path} is XML but has neither <PerformanceEstimates> nor <AreaEstimates> under <{root.tag}>; "
            f"expected {_CSYNTH_WHAT}"
        )

    def text_at(node: ET.Element | None, *paths: str) -> str | None:
        if node is None:
            return None
        for sub in paths:
            found = node.find(sub)
            if found is not None and found.text is not None and found.text.strip():
                return found.text.strip()
        return None

    report = SynthesisReport(source=str(path), kind="csynth")
    report.part = text_at(user, "Part")
    target_clock = text_at(user, "TargetClockPeriod") or text_at(perf, "SummaryOfTimingAnalysis/TargetClockPeriod")
    report.clock_ns = _number(target_clock)
    report.estimated_clock_ns = _number(text_at(perf, "SummaryOfTimingAnalysis/EstimatedClockPeriod"))
    report.latency_min = _integer(text_at(perf, "SummaryOfOverallLatency/Best-caseLatency"))
    report.latency_max = _integer(text_at(perf, "SummaryOfOverallLatency/Worst-caseLatency"))
    report.interval_min = _integer(text_at(perf, "SummaryOfOverallLatency/Interval-min"))
    report.interval_max = _integer(text_at(perf, "SummaryOfOverallLatency/Interval-max"))

    tags: set[str] = set()
    for section, target in (("Resources", None), ("AvailableResources", report.available)):
        node = area.find(section) if area is not None else None
        if node is None:
            continue
        for child in node:
            key = _XML_RESOURCES.get(child.tag)
            value = _number(child.text)
            tags.add(child.tag)
            if key is None or value is None:
                continue
            if target is None:
                if getattr(report, key) is None or child.tag == "DSP":  # DSP wins if a file had both tags
                    setattr(report, key, value)
            elif key not in target or child.tag == "DSP":
                target[key] = value

    version = text_at(root, "ReportVersion/Version")
    family = family_hint
    if family is None:
        if "DSP48E" in tags:
            family = "Vivado HLS"
        elif "DSP" in tags or text_at(user, "FlowTarget") is not None:
            family = "Vitis HLS"
        else:
            family = _family_from_version(version)
    report.tool = _tool_name(family, version)
    return report


# --------------------------------------------------------------------------- vivado_synth.rpt


_RPT_WHAT = "Vivado report_utilization output (e.g. vivado_synth.rpt from hls4ml's vsynth step)"


def _utilization_rows(text: str) -> dict[str, dict[str, str]]:
    """First occurrence of each row label in report_utilization's 'Site Type | Used | ... | Available' tables."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] | None = None
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith(("|", "+")):
            columns, in_table = None, False  # blank line, title or footnote: the table has ended
            continue
        if stripped.startswith("+"):
            continue  # border
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if not in_table:  # first row of a table is its header
            in_table = True
            columns = cells if cells[0] == "Site Type" and "Used" in cells else None
            continue
        if columns is None or len(cells) != len(columns):
            continue
        label = cells[0].rstrip("*").strip()
        rows.setdefault(label, dict(zip(columns, cells, strict=True)))
    return rows


def parse_vivado_synth_rpt(path: str | Path) -> SynthesisReport:
    """Parse ``vivado_synth.rpt`` (``report_utilization``): what logic synthesis really used, to judge estimates.

    Takes the Used and Available columns of the CLB/Slice LUTs, CLB/Slice Registers, Block RAM Tile, URAM and
    DSPs rows, finding columns by header name (newer Vivado adds a Prohibited column). BRAM is reported in 36 Kb
    tiles, so ``bram18 = 2 * tiles``; a RAMB18 is already half a tile there and is not added again. The tool
    (``Vivado v2020.1``) and part come from the header; clock and latency fields stay ``None``.
    """
    path = Path(path)
    text = _read_bytes(path, _RPT_WHAT).decode("utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"report file {path} is empty; expected {_RPT_WHAT}")
    rows = _utilization_rows(text)
    found = {_RPT_LABELS[label]: row for label, row in rows.items() if label in _RPT_LABELS}
    if not found:
        raise DataError(
            f"{path} has no utilization table with CLB/Slice LUTs, Registers, Block RAM Tile or DSPs rows; "
            f"expected {_RPT_WHAT}"
        )

    report = SynthesisReport(source=str(path), kind="vivado_synth")
    version = re.search(r"^\|\s*Tool Version\s*:\s*Vivado\s+v\.?\s*(\d{4}\.\d+(?:\.\d+)?)", text, re.MULTILINE)
    report.tool = f"Vivado v{version.group(1)}" if version else None
    device = re.search(r"^\|\s*Device\s*:\s*(\S+)", text, re.MULTILINE)
    report.part = device.group(1) if device else None

    def used(key: str) -> float | None:
        return _number(found[key].get("Used")) if key in found else None

    def available(key: str) -> float | None:
        return _number(found[key].get("Available")) if key in found else None

    for key in ("lut", "ff", "dsp", "uram"):
        setattr(report, key, used(key))
        total = available(key)
        if total is not None:
            report.available[key] = total

    tiles = used("bram_tile")
    if tiles is not None:
        report.bram18 = 2.0 * tiles
    elif used("ramb36") is not None or used("ramb18") is not None:
        report.bram18 = 2.0 * (used("ramb36") or 0.0) + (used("ramb18") or 0.0)
    tile_total = available("bram_tile")
    if tile_total is not None:
        report.available["bram18"] = 2.0 * tile_total
    else:
        ramb18_total = available("ramb18")
        if ramb18_total is not None:
            report.available["bram18"] = ramb18_total
    return report


# --------------------------------------------------------------------------- discovery and dispatch


def _project_info(folder: Path) -> tuple[list[str], str | None]:
    """Top-function names and HLS tool family that hls4ml's project.tcl declares (empty / None without one)."""
    script = folder / "project.tcl"
    if not script.is_file():
        return [], None
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return [], None
    name = re.search(r"set\s+project_name\s+\"?([^\"\s]+)\"?", text)
    backend = re.search(r"set\s+backend\s+\"?([^\"\s]+)\"?", text)
    backend_name = backend.group(1).lower() if backend else ""
    family = "Vitis HLS" if backend_name == "vitis" else ("Vivado HLS" if backend_name.startswith("vivado") else None)
    if not name:
        return [], family
    tops = [name.group(1)]
    if "accelerator" in backend_name:
        tops.insert(0, f"{name.group(1)}_axi")  # VivadoAccelerator synthesises the AXI wrapper as top
    return tops, family


def _app_info(project_dir: Path) -> tuple[str | None, str | None]:
    """(top, tool family) from the HLS project file: vivado_hls.app (Vivado HLS) or hls.app (Vitis HLS)."""
    for filename, family in (("vivado_hls.app", "Vivado HLS"), ("hls.app", "Vitis HLS")):
        app = project_dir / filename
        if app.is_file():
            try:
                top = re.search(r"\btop=\"([^\"]+)\"", app.read_text(errors="replace"))
            except OSError:
                top = None
            return (top.group(1) if top else None), family
    return None, None


def _pick_csynth(report_dir: Path, tops: list[str]) -> Path | None:
    """The top-level csynth.xml in a syn/report folder, which also holds one <module>_csynth.xml per submodule."""
    for name in [*tops, ""]:
        candidate = report_dir / (f"{name}_csynth.xml" if name else "csynth.xml")
        if candidate.is_file():
            return candidate
    candidates = sorted(report_dir.glob("*_csynth.xml"))
    return candidates[0] if len(candidates) == 1 else None


def _find_csynth(folder: Path) -> tuple[Path | None, str | None]:
    """(top-level csynth.xml, tool family hint) inside an hls4ml project, HLS project, solution or report folder."""
    folder = folder.resolve()
    tops, family = _project_info(folder)
    report_dirs: list[Path] = []
    for pattern in ("*_prj/*/syn/report", "*/*/syn/report", "*/syn/report", "syn/report"):
        report_dirs += sorted(d for d in folder.glob(pattern) if d.is_dir() and d not in report_dirs)
    if folder.name == "report":
        report_dirs.append(folder)
    for report_dir in report_dirs:
        # report_dir = <project>/<solution>/syn/report, so the HLS project folder is three levels up
        project_dir = report_dir.parents[2] if len(report_dir.parents) > 2 else folder
        app_top, app_family = _app_info(project_dir)
        names = list(tops)
        if app_top:
            names.append(app_top)
        if project_dir.name.endswith("_prj"):
            names.append(project_dir.name[: -len("_prj")])
        found = _pick_csynth(report_dir, names)
        if found is not None:
            return found, app_family or family
    return None, family


def find_reports(folder: str | Path) -> dict[str, Path]:
    """Reports inside an hls4ml output folder: {'csynth': <top>_csynth.xml, 'vivado_synth': vivado_synth.rpt}.

    Keys are present only for reports that exist. Use it to show both when a project has both; load_report()
    picks one. Also accepts the ``<top>_prj`` folder, a solution folder or its ``syn/report`` folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected an hls4ml project folder (the model's output_dir)")
    found: dict[str, Path] = {}
    csynth, _ = _find_csynth(folder)
    if csynth is not None:
        found["csynth"] = csynth
    rpt = folder / "vivado_synth.rpt"
    if rpt.is_file():
        found["vivado_synth"] = rpt
    return found


def _looks_like_xml(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
    except OSError as exc:
        raise DataError(f"cannot read report file {path} ({exc})") from exc
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def load_report(path: str | Path) -> SynthesisReport:
    """Load whichever report `path` is, so users can point tenfold at a file or at hls4ml's output folder.

    A ``.xml`` file (or any file starting with ``<``) is read as csynth.xml, anything else as report_utilization
    output. A folder is searched with :func:`find_reports`; when it holds both reports the csynth.xml is returned,
    because it carries latency and interval as well as resources and is what hls4ml's ``build(synth=True)`` always
    makes (call :func:`find_reports` and :func:`parse_vivado_synth_rpt` for the post-synthesis numbers). In a
    folder, the tool name is taken from the HLS project file (``vivado_hls.app`` / ``hls.app``) or project.tcl.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"report path {path} does not exist; expected a csynth.xml, a vivado_synth.rpt or an hls4ml project folder"
        )
    if path.is_dir():
        csynth, family = _find_csynth(path)
        if csynth is not None:
            return _parse_csynth(csynth, family_hint=family)
        rpt = path / "vivado_synth.rpt"
        if rpt.is_file():
            return parse_vivado_synth_rpt(rpt)
        raise DataError(
            f"no synthesis report found in {path}; looked for <top>_prj/solution*/syn/report/<top>_csynth.xml and "
            "vivado_synth.rpt (run hls_model.build(synth=True), or vsynth=True for vivado_synth.rpt)"
        )
    if path.suffix.lower() == ".xml" or _looks_like_xml(path):
        return parse_csynth_xml(path)
    if path.name.endswith("_csynth.rpt") or path.name == "csynth.rpt":
        xml = path.with_suffix(".xml")
        hint = f" use {xml} instead" if xml.is_file() else " pass the csynth.xml written next to it"
        raise DataError(f"{path} is the text HLS report, which tenfold does not parse;{hint}")
    return parse_vivado_synth_rpt(path)


# --------------------------------------------------------------------------- comparison


def _estimate_value(estimate: dict[str, Any], name: str) -> float | None:
    sources = [estimate]
    if isinstance(estimate.get("totals"), dict):  # a ModelCost.to_dict() keeps resources under "totals"
        sources.insert(0, estimate["totals"])
    for source in sources:
        for key in _ESTIMATE_ALIASES.get(name, (name,)):
            value = source.get(key)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                return float(value)
    return None


def compare(estimate: dict[str, float], report: SynthesisReport) -> list[dict[str, Any]]:
    """One row per compared quantity, so an estimate's error against real synthesis can be read at a glance.

    Rows cover dsp, bram18, lut, ff, latency_max and interval_max, each with ``resource``, ``estimated``,
    ``reported``, ``error`` (estimated - reported: positive means tenfold over-estimates), ``abs_error``
    (``|error|``) and ``rel_error`` (``abs_error / reported``). Errors are None when either side lacks the number;
    rel_error is None when only the report says 0 (0.0 when both do). The estimate may use tenfold's own keys
    (``latency_cycles``, ``ii_cycles``, or a whole ModelCost.to_dict() with its ``totals``).
    """
    rows: list[dict[str, Any]] = []
    for name in COMPARED_FIELDS:
        estimated = _estimate_value(estimate, name)
        raw = getattr(report, name)
        reported = None if raw is None else float(raw)
        error = abs_error = rel_error = None
        if estimated is not None and reported is not None:
            error = estimated - reported
            abs_error = abs(error)
            if reported != 0:
                rel_error = abs_error / abs(reported)
            elif abs_error == 0:
                rel_error = 0.0
        rows.append(
            {
                "resource": name,
                "estimated": estimated,
                "reported": reported,
                "error": error,
                "abs_error": abs_error,
                "rel_error": rel_error,
            }
        )
    return rows
