"""The shipped cost-model defaults against real synthesis figures (hls4ml's baselines)."""

from __future__ import annotations

import pytest

from tenfold.errors import DataError
from tenfold.hardware.calibration import CalibrationResult, build_model, load_baselines, predict_row
from tenfold.hardware.cost import CostParams


@pytest.mark.shared_data
def test_default_parameters_meet_the_dsp_and_bram_targets(shared_data):
    rows = load_baselines(shared_data("hls4ml-synthesis"))
    assert len(rows) >= 50
    params = CostParams()
    results = [{"reported": r.reported, "predicted": predict_row(r, params, draws=2)} for r in rows
               if build_model(r) is not None]
    table = CalibrationResult(params=params, rows=results).error_table()
    assert table["dsp"]["rows"] >= 40 and table["dsp"]["median_rel_error"] <= 0.10
    assert table["bram18"]["rows"] >= 10 and table["bram18"]["median_rel_error"] <= 0.15


def test_missing_or_malformed_baselines(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_baselines(tmp_path / "nothing.csv")
    bad = tmp_path / "baselines.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks columns"):
        load_baselines(tmp_path)
