"""A trial without Ray: it reports after each stage, survives a crash by resuming, and never runs twice."""

from __future__ import annotations

import json
import math

import pytest

from tenfold.pipeline.config import run_config_from_dict
from tenfold.sweep.trial import StageReporter, TrialRecord, run_trial

RECIPE = {"model": {"name": "jet_mlp"}, "data": {"name": "digits"}, "train": {"epochs": 2, "lr": 0.003},
          "budget": "dsp<=0.5x", "tolerance": 0.1, "methods": ["prune"], "prune": {"steps": 1},
          "finetune": {"epochs": 1}, "export": {"hls4ml": False}}


class CrashOnce:
    """Collects reports; the first report raises, like a worker dying just after the baseline was saved."""

    def __init__(self, trial_dir, crash: bool):
        self.trial_dir, self.crash, self.reports, self.done_at_report = trial_dir, crash, [], []

    def __call__(self, metrics):
        state = self.trial_dir / "run_state.json"
        self.done_at_report.append(json.loads(state.read_text())["done"] if state.exists() else None)
        self.reports.append(metrics)
        if self.crash:
            self.crash = False
            raise RuntimeError("worker lost")


def test_crash_resume_and_recall(tmp_path):
    base = run_config_from_dict(RECIPE)
    trial_dir = tmp_path / "t0"
    first = CrashOnce(trial_dir, crash=True)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_trial("t0", {"budget": "dsp<=0.4x"}, base, tmp_path, report=first)
    # the baseline was reported while the run was going on (the prune stage had started, not finished)
    assert first.reports[0]["stage"] == "baseline" and first.reports[0]["finished"] == 0
    assert first.done_at_report == [["baseline"]]
    crashed = TrialRecord.load(trial_dir, "t0")
    assert crashed.status == "crashed" and crashed.attempts == 1 and "worker lost" in crashed.error
    baseline_checkpoint = trial_dir / "stages" / "00_baseline.pt"
    saved_at = baseline_checkpoint.stat().st_mtime_ns

    second = CrashOnce(trial_dir, crash=False)
    record = run_trial("t0", {"budget": "dsp<=0.4x"}, base, tmp_path, report=second)
    assert baseline_checkpoint.stat().st_mtime_ns == saved_at  # resumed from run_state.json, not restarted
    assert [r["stage"] for r in second.reports] == ["baseline", "prune"]
    assert [r["finished"] for r in second.reports] == [0, 1]
    assert record.status == "completed" and record.attempts == 2 and record.completions == 1
    final = json.loads((trial_dir / "report.json").read_text())["snapshots"][-1]
    assert second.reports[-1]["val_accuracy"] == final["val_accuracy"]
    assert second.reports[-1]["dsp"] == final["totals"]["dsp"]
    assert second.reports[-1]["met_budget"] == json.loads((trial_dir / "report.json").read_text())["met_budget"]

    third = CrashOnce(trial_dir, crash=False)
    again = run_trial("t0", {"budget": "dsp<=0.4x"}, base, tmp_path, report=third)
    assert third.reports == [record.metrics]  # recalled, not re-run
    assert again.attempts == 2 and again.completions == 1


def test_tenfold_errors_fail_the_trial_without_retry(tmp_path):
    reports = []
    record = run_trial("bad", {"data.name": "no-such-dataset"}, run_config_from_dict(RECIPE), tmp_path,
                       report=reports.append)
    assert record.status == "failed" and "no-such-dataset" in record.error
    assert len(reports) == 1 and reports[0]["finished"] == 1 and math.isnan(reports[0]["val_accuracy"])
    assert TrialRecord.load(tmp_path / "bad", "bad").status == "failed"


def test_stage_reporter_reports_in_order_and_holds_back_the_last_stage(tmp_path):
    reports = []
    reporter = StageReporter(tmp_path, ["baseline", "prune", "quantize"], reports.append)
    reporter.add_task("nothing on disk yet")
    assert reports == []

    def snap(stage):
        return {"label": stage, "stage": stage, "val_accuracy": 0.9, "test_accuracy": 0.8,
                "totals": {"dsp": 10.0, "bram18": 1.0, "lut": 5.0, "ff": 2.0}, "latency_cycles": 7,
                "stored_parameters": 3}

    state = tmp_path / "run_state.json"
    state.write_text(json.dumps({"snapshots": [snap("baseline"), {"stage": "prune-step"} | snap("x")]}))
    reporter.log("epoch line")
    reporter.log("epoch line")  # unchanged file: nothing new
    assert [r["stage"] for r in reports] == ["baseline"]
    state.write_text(json.dumps({"snapshots": [snap("baseline"), snap("prune"), snap("quantize")]}))
    reporter.poll()
    assert [r["stage"] for r in reports] == ["baseline", "prune"]  # quantize is the final result
    assert reports[1]["dsp"] == 10.0 and reports[1]["latency_cycles"] == 7 and reports[1]["finished"] == 0
