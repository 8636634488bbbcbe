"""Parsing real Vivado/Vitis synthesis reports: fixture figures, graceful gaps, clear errors and folder discovery.

The fixtures under tests/hardware/fixtures/ carry headline figures from shared/data/hls4ml-synthesis/baselines.csv
(see the README there); the expected values below are those CSV values, and one shared-data test re-reads the CSV
to make sure they still agree.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tenfold.errors import DataError, TenfoldError
from tenfold.hardware.reports import (
    COMPARED_FIELDS,
    SynthesisReport,
    compare,
    find_reports,
    load_report,
    parse_csynth_xml,
    parse_vivado_synth_rpt,
)

FIXTURES = Path(__file__).parent / "fixtures"
VIVADO_HLS_XML = FIXTURES / "vivado_hls_2020.1_conv2d_csynth.xml"
VITIS_HLS_XML = FIXTURES / "vitis_hls_2024.1_conv2d_csynth.xml"
ZCU102_RPT = FIXTURES / "vivado_2020.1_zcu102_vivado_synth.rpt"
PYNQ_RPT = FIXTURES / "vivado_2020.1_pynqz2_vivado_synth.rpt"

VU13P_TOTALS = {"dsp": 12288.0, "bram18": 5376.0, "lut": 1728000.0, "ff": 3456000.0, "uram": 1280.0}

# baselines.csv, test_conv2d io_parallel-Vivado-Resource-same-channels_last (Vivado HLS 2020.1)
VIVADO_CONV2D = {
    "kind": "csynth",
    "tool": "Vivado HLS 2020.1",
    "part": "xcvu13p-flga2577-2-e",
    "clock_ns": 5.0,
    "estimated_clock_ns": 4.263,
    "dsp": 740.0,
    "bram18": 0.0,
    "lut": 86819.0,
    "ff": 52870.0,
    "uram": 0.0,
    "latency_min": 51,
    "latency_max": 52,
    "interval_min": 49,
    "interval_max": 49,
    "available": VU13P_TOTALS,
}
# baselines.csv, test_conv2d io_parallel-Vitis-Resource-same-channels_last (Vitis HLS 2024.1)
VITIS_CONV2D = {
    **VIVADO_CONV2D,
    "tool": "Vitis HLS 2024.1",
    "estimated_clock_ns": 3.48,
    "dsp": 792.0,
    "lut": 75413.0,
    "ff": 33150.0,
    "latency_min": 52,
    "latency_max": 52,
    "interval_min": 53,
    "interval_max": 53,
}
# baselines.csv, PR #1451 VivadoAccelerator dense on a ZCU102 (UltraScale+): post_synth_* and avail_*
ZCU102_SYNTH = {
    "kind": "vivado_synth",
    "tool": "Vivado v2020.1",
    "part": "xczu9eg-ffvb1156-2-e",
    "lut": 47.0,
    "ff": 35.0,
    "bram18": 1.0,  # 0.5 Block RAM Tile (one RAMB18) = 1 BRAM18
    "dsp": 2.0,
    "uram": 0.0,
    "available": {"lut": 274080.0, "ff": 548160.0, "bram18": 1824.0, "dsp": 2520.0, "uram": 0.0},
}
# baselines.csv, hls4ml test_report Vivado fixture on a PYNQ-Z2 (7-series, "Slice" labels)
PYNQ_SYNTH = {
    "kind": "vivado_synth",
    "tool": "Vivado v2020.1",
    "part": "7z020clg400-1",
    "lut": 1526.0,
    "ff": 2428.0,
    "bram18": 0.0,
    "dsp": 66.0,
    "uram": None,
    "available": {"lut": 53200.0, "ff": 106400.0, "bram18": 280.0, "dsp": 220.0},
}


def _assert_fields(report: SynthesisReport, expected: dict) -> None:
    got = report.as_dict()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def _csynth_xml(
    *,
    version: str | None = "2020.1",
    dsp_tag: str | None = "DSP48E",
    perf: str | None = None,
    area: bool = True,
) -> str:
    """A minimal csynth.xml; perf=None gives a complete PerformanceEstimates section, perf="" leaves it out."""
    if perf is None:
        perf = (
            "<SummaryOfTimingAnalysis><EstimatedClockPeriod>4.1</EstimatedClockPeriod></SummaryOfTimingAnalysis>"
            "<SummaryOfOverallLatency><Best-caseLatency>7</Best-caseLatency><Worst-caseLatency>9</Worst-caseLatency>"
            "<Interval-min>1</Interval-min><Interval-max>2</Interval-max></SummaryOfOverallLatency>"
        )
    parts = ["<profile>"]
    if version:
        parts.append(f"<ReportVersion><Version>{version}</Version></ReportVersion>")
    parts.append("<UserAssignments><Part>xcu250-figd2104-2L-e</Part><TargetClockPeriod>4.00</TargetClockPeriod>")
    parts.append("</UserAssignments>")
    if perf:
        parts.append(f"<PerformanceEstimates>{perf}</PerformanceEstimates>")
    if area:
        dsp = f"<{dsp_tag}>12</{dsp_tag}>" if dsp_tag else ""
        parts.append(f"<AreaEstimates><Resources><BRAM_18K>4</BRAM_18K>{dsp}<FF>300</FF><LUT>500</LUT></Resources>")
        parts.append("</AreaEstimates>")
    parts.append("</profile>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- real-layout fixtures


def test_vivado_hls_2020_csynth_matches_baseline() -> None:
    _assert_fields(parse_csynth_xml(VIVADO_HLS_XML), VIVADO_CONV2D)


def test_vitis_hls_2024_csynth_matches_baseline_and_ignores_submodules() -> None:
    report = parse_csynth_xml(VITIS_HLS_XML)
    _assert_fields(report, VITIS_CONV2D)
    assert report.source == str(VITIS_HLS_XML)


def test_ultrascale_plus_utilization_report_doubles_bram_tiles() -> None:
    report = parse_vivado_synth_rpt(ZCU102_RPT)
    _assert_fields(report, ZCU102_SYNTH)
    for name in ("clock_ns", "estimated_clock_ns", "latency_min", "latency_max", "interval_min", "interval_max"):
        assert getattr(report, name) is None, name


def test_seven_series_utilization_report_uses_slice_labels() -> None:
    _assert_fields(parse_vivado_synth_rpt(PYNQ_RPT), PYNQ_SYNTH)


@pytest.mark.shared_data
def test_fixture_figures_agree_with_shared_baselines(shared_data: Callable[[str], Path]) -> None:
    with shared_data("hls4ml-synthesis/baselines.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))

    def row(params: str, tool_version: str, test_file: str = "test/pytest/test_keras_api.py") -> dict[str, str]:
        (found,) = [
            r
            for r in rows
            if r["test_params"] == params and r["tool_version"].startswith(tool_version) and r["test_file"] == test_file
        ]
        return found

    csynth_cases = [
        (VIVADO_HLS_XML, row("io_parallel-Vivado-Resource-same-channels_last", "2020.1")),
        (VITIS_HLS_XML, row("io_parallel-Vitis-Resource-same-channels_last", "2024.1")),
    ]
    for path, expected in csynth_cases:
        report = parse_csynth_xml(path)
        assert report.part == expected["part"]
        assert report.clock_ns == pytest.approx(float(expected["clock_ns"]))
        assert report.estimated_clock_ns == pytest.approx(float(expected["est_clock_ns"]))
        for field, column in [("dsp", "DSP"), ("bram18", "BRAM_18K"), ("lut", "LUT"), ("ff", "FF"), ("uram", "URAM")]:
            assert getattr(report, field) == float(expected[column]), (path.name, field)
            assert report.available[field] == float(expected[f"avail_{column}"]), (path.name, field)
        for field in ("latency_min", "latency_max", "interval_min", "interval_max"):
            assert getattr(report, field) == int(expected[field]), (path.name, field)

    rpt_cases = [
        (
            ZCU102_RPT,
            row(
                "io_parallel-VivadoAccelerator",
                "2020.1",
                "test/pytest/test_keras_api_vivadoacc.py (PR #1451, unmerged)",
            ),
        ),
        (PYNQ_RPT, row("Vivado", "2020.1", "test/pytest/test_report.py")),
    ]
    for path, expected in rpt_cases:
        report = parse_vivado_synth_rpt(path)
        assert report.lut == float(expected["post_synth_LUT"])
        assert report.ff == float(expected["post_synth_FF"])
        assert report.dsp == float(expected["post_synth_DSP"])
        # the CSV holds hls4ml's raw "Block RAM Tile" figure; tenfold counts BRAM18 = 2 x tiles
        assert report.bram18 == 2 * float(expected["post_synth_BRAM_18K"])
        assert report.available["lut"] == float(expected["avail_LUT"])
        assert report.available["ff"] == float(expected["avail_FF"])
        assert report.available["dsp"] == float(expected["avail_DSP"])
        assert report.available["bram18"] == float(expected["avail_BRAM_18K"])


def test_as_dict_is_json_ready_and_complete() -> None:
    data = parse_csynth_xml(VITIS_HLS_XML).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "source", "kind", "tool", "part", "clock_ns", "estimated_clock_ns", "dsp", "bram18", "lut", "ff", "uram",
        "latency_min", "latency_max", "interval_min", "interval_max", "available",
    }  # fmt: skip


# --------------------------------------------------------------------------- csynth variants and gaps


def test_undef_latency_and_interval_become_none(tmp_path: Path) -> None:
    perf = (
        "<SummaryOfTimingAnalysis><EstimatedClockPeriod>3.9</EstimatedClockPeriod></SummaryOfTimingAnalysis>"
        "<SummaryOfOverallLatency><Best-caseLatency>12</Best-caseLatency><Worst-caseLatency>undef</Worst-caseLatency>"
        "<Interval-min>13</Interval-min><Interval-max>undef</Interval-max></SummaryOfOverallLatency>"
    )
    path = tmp_path / "top_csynth.xml"
    path.write_text(_csynth_xml(version="2023.2", dsp_tag="DSP", perf=perf))
    report = parse_csynth_xml(path)
    assert (report.latency_min, report.latency_max, report.interval_min, report.interval_max) == (12, None, 13, None)
    assert report.estimated_clock_ns == pytest.approx(3.9)
    assert report.dsp == 12.0


def test_missing_performance_section_leaves_timing_none(tmp_path: Path) -> None:
    path = tmp_path / "area_only.xml"
    path.write_text(_csynth_xml(perf=""))
    report = parse_csynth_xml(path)
    assert (report.dsp, report.bram18, report.lut, report.ff) == (12.0, 4.0, 500.0, 300.0)
    assert report.uram is None  # no URAM tag: the part may have none
    assert report.available == {}  # no AvailableResources section
    assert report.clock_ns == 4.0  # UserAssignments still there
    assert report.estimated_clock_ns is None
    assert report.latency_min is report.latency_max is report.interval_min is report.interval_max is None


def test_missing_area_section_leaves_resources_none(tmp_path: Path) -> None:
    path = tmp_path / "perf_only.xml"
    path.write_text(_csynth_xml(area=False, version=None))
    report = parse_csynth_xml(path)
    assert report.dsp is report.bram18 is report.lut is report.ff is report.uram is None
    assert (report.latency_min, report.latency_max, report.interval_min, report.interval_max) == (7, 9, 1, 2)
    assert report.tool is None  # no ReportVersion: the file does not say


@pytest.mark.parametrize(
    ("version", "dsp_tag", "tool"),
    [
        ("2020.1", "DSP48E", "Vivado HLS 2020.1"),
        ("2020.1", "DSP", "Vitis HLS 2020.1"),
        ("2019.2", None, "Vivado HLS 2019.2"),
        ("2022.2", None, "Vitis HLS 2022.2"),
        ("2020.1", None, "HLS 2020.1"),  # both tools had a 2020.1 and nothing else tells them apart
    ],
)
def test_tool_name_from_dsp_tag_or_version(tmp_path: Path, version: str, dsp_tag: str | None, tool: str) -> None:
    path = tmp_path / "csynth.xml"
    path.write_text(_csynth_xml(version=version, dsp_tag=dsp_tag))
    report = parse_csynth_xml(path)
    assert report.tool == tool
    assert report.dsp == (12.0 if dsp_tag else None)


def test_namespaced_csynth_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ns.xml"
    path.write_text(_csynth_xml().replace("<profile>", '<profile xmlns="urn:example:hls">', 1))
    assert parse_csynth_xml(path).lut == 500.0


# --------------------------------------------------------------------------- utilization-report variants


NEWER_RPT = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved. Copyright 2022-2023 Advanced Micro Devices, Inc.
---------------------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2023.2 (lin64) Build 4029153 Fri Oct 13 20:13:54 MDT 2023
| Command      : report_utilization -file vivado_synth.rpt
| Design       : myproject
| Device       : xcvu13p-flga2577-2-e
| Speed File   : -2
| Design State : Synthesized
---------------------------------------------------------------------------------------------------------

1. CLB Logic
------------

+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| CLB LUTs*                  | 61234 |     0 |          0 |   1728000 |  3.54 |
| CLB Registers              | 30111 |     0 |          0 |   3456000 |  0.87 |
+----------------------------+-------+-------+------------+-----------+-------+

2. BLOCKRAM
-----------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  7.5 |     0 |          0 |      2688 |  0.28 |
|   RAMB36/FIFO*    |    6 |     0 |          0 |      2688 |  0.22 |
|   RAMB18          |    3 |     0 |          0 |      5376 |  0.06 |
| URAM              |    4 |     0 |          0 |      1280 |  0.31 |
+-------------------+------+-------+------------+-----------+-------+

3. ARITHMETIC
-------------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |  700 |     0 |          0 |     12288 |  5.70 |
+----------------+------+-------+------------+-----------+-------+

13. SLR CLB Logic and Dedicated Block Utilization
-------------------------------------------------

+----------------+-------+-------+------+------+--------+--------+
|    Site Type   |  SLR0 |  SLR1 | SLR2 | SLR3 | SLR0 % | SLR1 % |
+----------------+-------+-------+------+------+--------+--------+
| CLB LUTs       | 99999 |     1 |    0 |    0 |   5.00 |   0.00 |
| DSPs           |   999 |     1 |    0 |    0 |   5.00 |   0.00 |
+----------------+-------+-------+------+------+--------+--------+
"""


def test_columns_are_found_by_header_name_and_slr_tables_ignored(tmp_path: Path) -> None:
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(NEWER_RPT)
    report = parse_vivado_synth_rpt(path)
    assert (report.lut, report.ff, report.dsp, report.uram) == (61234.0, 30111.0, 700.0, 4.0)
    assert report.bram18 == 15.0  # 6 RAMB36 + 3 RAMB18 = 7.5 tiles = 15 BRAM18, RAMB18 not added twice
    assert report.available == {"lut": 1728000.0, "ff": 3456000.0, "dsp": 12288.0, "uram": 1280.0, "bram18": 5376.0}
    assert report.tool == "Vivado v2023.2"
    assert report.part == "xcvu13p-flga2577-2-e"


def test_ramb_rows_are_used_when_the_tile_row_is_missing(tmp_path: Path) -> None:
    text = NEWER_RPT.replace("| Block RAM Tile    |  7.5 |     0 |          0 |      2688 |  0.28 |\n", "")
    path = tmp_path / "no_tile_row.rpt"
    path.write_text(text)
    report = parse_vivado_synth_rpt(path)
    assert report.bram18 == 15.0
    assert report.available["bram18"] == 5376.0


# --------------------------------------------------------------------------- bad input


def test_missing_files_raise_data_error_with_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "myproject_csynth.xml"
    for reader in (parse_csynth_xml, parse_vivado_synth_rpt, load_report):
        with pytest.raises(DataError, match="does not exist") as info:
            reader(missing)
        assert str(missing) in str(info.value)


def test_non_xml_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "myproject_csynth.xml"
    path.write_text("this is not XML at all\n")
    with pytest.raises(DataError, match=r"not valid XML.*csynth\.xml") as info:
        parse_csynth_xml(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, TenfoldError)


def test_truncated_xml_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_text(VIVADO_HLS_XML.read_text()[:700])
    with pytest.raises(DataError, match="not valid XML"):
        load_report(path)


def test_xml_without_expected_sections_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "pom.xml"
    path.write_text("<project><version>1.0</version></project>")
    with pytest.raises(DataError, match=r"neither <PerformanceEstimates> nor <AreaEstimates> under <project>") as info:
        parse_csynth_xml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_files_are_data_errors(tmp_path: Path, content: str) -> None:
    rpt = tmp_path / "vivado_synth.rpt"
    rpt.write_text(content)
    with pytest.raises(DataError, match=r"is empty; expected Vivado report_utilization") as info:
        parse_vivado_synth_rpt(rpt)
    assert str(rpt) in str(info.value)
    xml = tmp_path / "empty_csynth.xml"
    xml.write_text(content)
    with pytest.raises(DataError, match="is empty"):
        parse_csynth_xml(xml)


def test_rpt_without_utilization_tables_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "timing.rpt"
    path.write_text("Timing Report\n\n| Tool Version : Vivado v.2020.1\n\nWNS(ns) 0.512\n")
    with pytest.raises(DataError, match="no utilization table"):
        parse_vivado_synth_rpt(path)
    binary = tmp_path / "garbage.rpt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="no utilization table"):
        load_report(binary)


def test_folder_given_to_file_parser_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        parse_csynth_xml(tmp_path)


def test_text_csynth_report_points_to_the_xml(tmp_path: Path) -> None:
    rpt = tmp_path / "myproject_csynth.rpt"
    rpt.write_text("== Vivado HLS Report for 'myproject'\n")
    with pytest.raises(DataError, match=r"pass the csynth\.xml"):
        load_report(rpt)
    shutil.copy(VIVADO_HLS_XML, tmp_path / "myproject_csynth.xml")
    with pytest.raises(DataError, match=r"use .*myproject_csynth\.xml instead"):
        load_report(rpt)


# --------------------------------------------------------------------------- load_report dispatch and folders


def test_load_report_dispatches_on_extension_and_content(tmp_path: Path) -> None:
    assert load_report(VIVADO_HLS_XML).kind == "csynth"
    assert load_report(ZCU102_RPT).kind == "vivado_synth"
    odd_xml = tmp_path / "report.txt"
    odd_xml.write_bytes(b"\xef\xbb\xbf" + VITIS_HLS_XML.read_bytes())  # with a UTF-8 byte-order mark
    assert load_report(odd_xml).dsp == 792.0
    odd_rpt = tmp_path / "utilization"
    odd_rpt.write_text(PYNQ_RPT.read_text())
    assert load_report(odd_rpt).lut == 1526.0


def _hls4ml_project(root: Path, *, backend: str = "vivado", xml: Path = VIVADO_HLS_XML, rpt: bool = True) -> Path:
    """An hls4ml output folder as build(synth=True, vsynth=True) leaves it, with submodule reports as decoys."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "project.tcl").write_text(
        f'variable project_name\nset project_name "myproject"\nvariable backend\nset backend "{backend}"\n'
    )
    report_dir = root / "myproject_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(xml, report_dir / "myproject_csynth.xml")
    decoy = _csynth_xml(version="2020.1").replace("<LUT>500</LUT>", "<LUT>1</LUT>")
    (report_dir / "conv_2d_cl_ap_fixed_16_6_5_3_0_config2_s_csynth.xml").write_text(decoy)
    (report_dir / "myproject_csynth.rpt").write_text("== Vivado HLS Report for 'myproject'\n")
    if rpt:
        shutil.copy(ZCU102_RPT, root / "vivado_synth.rpt")
    return root


def test_project_folder_prefers_csynth_over_vivado_synth(tmp_path: Path) -> None:
    project = _hls4ml_project(tmp_path / "hls4ml_prj")
    report = load_report(project)
    _assert_fields(report, VIVADO_CONV2D)
    assert report.source.endswith("myproject_prj/solution1/syn/report/myproject_csynth.xml")
    found = find_reports(project)
    assert set(found) == {"csynth", "vivado_synth"}
    assert found["csynth"].name == "myproject_csynth.xml"
    _assert_fields(parse_vivado_synth_rpt(found["vivado_synth"]), ZCU102_SYNTH)


def test_project_folder_with_only_vivado_synth(tmp_path: Path) -> None:
    shutil.copy(PYNQ_RPT, tmp_path / "vivado_synth.rpt")
    assert load_report(tmp_path).kind == "vivado_synth"
    assert find_reports(tmp_path) == {"vivado_synth": tmp_path / "vivado_synth.rpt"}


def test_minimal_folder_without_project_tcl(tmp_path: Path) -> None:
    """The layout the brief names: only myproject_prj/solution1/syn/report/myproject_csynth.xml."""
    report_dir = tmp_path / "myproject_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(VITIS_HLS_XML, report_dir / "myproject_csynth.xml")
    (report_dir / "dense_latency_csynth.xml").write_text(_csynth_xml())  # a submodule: must not be picked
    _assert_fields(load_report(tmp_path), VITIS_CONV2D)


@pytest.mark.parametrize("level", ["myproject_prj", "myproject_prj/solution1", "myproject_prj/solution1/syn/report"])
def test_inner_project_folders_are_accepted(tmp_path: Path, level: str) -> None:
    _hls4ml_project(tmp_path, rpt=False)
    assert load_report(tmp_path / level).lut == VIVADO_CONV2D["lut"]


def test_plain_csynth_xml_is_used_when_top_name_is_unknown(tmp_path: Path) -> None:
    report_dir = tmp_path / "proj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(VIVADO_HLS_XML, report_dir / "csynth.xml")
    (report_dir / "some_module_csynth.xml").write_text(_csynth_xml())
    assert load_report(tmp_path).dsp == 740.0


def test_accelerator_backend_reads_the_axi_top(tmp_path: Path) -> None:
    _hls4ml_project(tmp_path, backend="vivadoaccelerator", rpt=False)
    report_dir = tmp_path / "myproject_prj" / "solution1" / "syn" / "report"
    shutil.copy(VITIS_HLS_XML, report_dir / "myproject_axi_csynth.xml")  # different numbers tell them apart
    assert load_report(tmp_path).dsp == 792.0


@pytest.mark.parametrize(
    ("app", "tcl_backend", "tool"),
    [
        ("hls.app", "vitis", "Vitis HLS 2020.1"),
        ("vivado_hls.app", "vivado", "Vivado HLS 2020.1"),
        (None, "vitis", "Vitis HLS 2020.1"),
        (None, "vivado", "Vivado HLS 2020.1"),
    ],
)
def test_folder_names_the_tool_from_the_project_files(
    tmp_path: Path, app: str | None, tcl_backend: str, tool: str
) -> None:
    xml = tmp_path / "ambiguous.xml"
    xml.write_text(_csynth_xml(version="2020.1", dsp_tag=None))  # the XML alone cannot tell the tool
    project = _hls4ml_project(tmp_path / "prj", backend=tcl_backend, xml=xml, rpt=False)
    if app:
        (project / "myproject_prj" / app).write_text(
            '<project xmlns="com.autoesl.autopilot.project" name="myproject_prj" top="myproject"/>'
        )
    assert parse_csynth_xml(xml).tool == "HLS 2020.1"
    assert load_report(project).tool == tool


def test_folder_without_reports_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "project.tcl").write_text('set project_name "myproject"\n')
    with pytest.raises(DataError, match=r"no synthesis report found in .*build\(synth=True\)"):
        load_report(tmp_path)
    assert find_reports(tmp_path) == {}
    with pytest.raises(DataError, match="not a folder"):
        find_reports(tmp_path / "project.tcl")


# --------------------------------------------------------------------------- compare


def test_compare_rows_against_csynth() -> None:
    report = parse_csynth_xml(VIVADO_HLS_XML)
    estimate = {"dsp": 768.0, "bram18": 0.0, "lut": 90000.0, "ff": 50000.0, "latency_max": 48, "interval_max": 49}
    rows = compare(estimate, report)
    assert [row["resource"] for row in rows] == list(COMPARED_FIELDS)
    by_name = {row["resource"]: row for row in rows}
    assert by_name["dsp"] == {
        "resource": "dsp",
        "estimated": 768.0,
        "reported": 740.0,
        "error": 28.0,
        "abs_error": 28.0,
        "rel_error": pytest.approx(28 / 740),
    }
    assert by_name["ff"]["error"] == -2870.0 and by_name["ff"]["abs_error"] == 2870.0
    assert by_name["bram18"]["rel_error"] == 0.0  # both zero: exact
    assert by_name["latency_max"]["reported"] == 52.0 and by_name["latency_max"]["error"] == -4.0
    assert by_name["interval_max"]["abs_error"] == 0.0


def test_compare_gives_none_where_a_side_lacks_the_number() -> None:
    rows = {row["resource"]: row for row in compare({"dsp": 3.0, "bram18": 2.0}, parse_vivado_synth_rpt(PYNQ_RPT))}
    assert rows["latency_max"]["reported"] is None and rows["latency_max"]["abs_error"] is None
    assert rows["lut"]["estimated"] is None and rows["lut"]["rel_error"] is None
    assert rows["bram18"]["abs_error"] == 2.0 and rows["bram18"]["rel_error"] is None  # report says 0
    assert rows["dsp"]["rel_error"] == pytest.approx(63 / 66)


def test_compare_accepts_tenfold_model_cost_dict() -> None:
    cost = {
        "totals": {"dsp": 792.0, "bram18": 0.0, "lut": 75413.0, "ff": 33150.0},
        "latency_cycles": 52,
        "ii_cycles": 53,
        "latency_ns": 260.0,
    }
    rows = compare(cost, parse_csynth_xml(VITIS_HLS_XML))
    assert all(row["abs_error"] == 0.0 and row["rel_error"] == 0.0 for row in rows), rows
