"""Joining Tune's view with each trial's record, choosing the best trial, and writing sweep.json/md and best/."""

from __future__ import annotations

import json

from tenfold.sweep.config import sweep_config_from_dict
from tenfold.sweep.results import outcome, summarize, write_outputs
from tenfold.sweep.trial import TrialRecord

RECIPE = {"model": {"name": "jet_mlp"}, "budget": "dsp<=0.5x", "methods": ["prune"]}
CONFIG = sweep_config_from_dict({"base": RECIPE, "space": {"budget": {"grid": ["dsp<=0.2x", "dsp<=0.4x",
                                                                              "dsp<=0.6x", "dsp<=0.8x"]}}})


def finished(trials_dir, trial_id, budget, acc, dsp, met=True, status="completed"):
    out = trials_dir / trial_id
    out.mkdir(parents=True)
    metrics = {"val_accuracy": acc, "test_accuracy": acc - 0.01, "dsp": dsp, "bram18": 0.0, "lut": 10 * dsp,
               "ff": 1.0, "latency_cycles": 12, "stored_parameters": 100, "finished": 1, "met_budget": met}
    TrialRecord(trial_id, {"budget": budget}, status=status, attempts=1, completions=int(status == "completed"),
                metrics=metrics if status == "completed" else {}, error=None if status == "completed" else "boom"
                ).save(out)
    (out / "model.pt").write_bytes(b"model of " + trial_id.encode())
    (out / "report.md").write_text(f"# {trial_id}\n")
    (out / "hls4ml_prj").mkdir()
    return out


def test_summary_front_best_and_outputs(tmp_path):
    trials_dir = tmp_path / "trials"
    finished(trials_dir, "t0", "dsp<=0.2x", 0.80, 100)
    finished(trials_dir, "t1", "dsp<=0.4x", 0.90, 200)
    finished(trials_dir, "t2", "dsp<=0.6x", 0.97, 400, met=False)  # most accurate, but missed its budget
    finished(trials_dir, "t3", "dsp<=0.8x", 0.85, 300)  # dominated by t1
    outcomes = [outcome(f"t{i}", "TERMINATED", {"budget": b}, trials_dir)
                for i, b in enumerate(["dsp<=0.2x", "dsp<=0.4x", "dsp<=0.6x", "dsp<=0.8x"])]
    report = summarize(CONFIG, outcomes, tmp_path)
    assert report.complete
    assert report.pareto == ["t0", "t1", "t2"]
    assert report.best == "t1"  # best val accuracy among the trials that met their budget
    write_outputs(report)
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["best"] == "t1" and data["pareto"] == ["t0", "t1", "t2"] and data["counts"] == {"completed": 4}
    assert (tmp_path / "best" / "model.pt").read_bytes() == b"model of t1"
    assert (tmp_path / "best" / "hls4ml_prj").resolve() == (trials_dir / "t1" / "hls4ml_prj").resolve()
    text = (tmp_path / "sweep.md").read_text()
    assert "## Pareto-optimal configurations" in text and "**t1**: `budget=dsp<=0.4x`" in text
    assert "| 4 | t3 | dsp<=0.8x | completed | 85.00% |" in text
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_statuses_and_incomplete_sweeps(tmp_path):
    trials_dir = tmp_path / "trials"
    finished(trials_dir, "a", "dsp<=0.2x", 0.8, 100)
    finished(trials_dir, "b", "dsp<=0.4x", 0.8, 100, status="failed")
    (trials_dir / "c").mkdir()
    TrialRecord("c", attempts=2, status="crashed", error="RuntimeError: x").save(trials_dir / "c")
    (trials_dir / "d").mkdir()
    TrialRecord("d", attempts=1, status="running").save(trials_dir / "d")
    statuses = {t: outcome(t, s, {}, trials_dir) for t, s in
                [("a", "TERMINATED"), ("b", "TERMINATED"), ("c", "ERROR"), ("d", "TERMINATED"), ("e", "PENDING")]}
    assert {t: o.status for t, o in statuses.items()} == {"a": "completed", "b": "failed", "c": "crashed",
                                                          "d": "stopped", "e": "unfinished"}
    assert statuses["c"].error == "RuntimeError: x" and statuses["c"].attempts == 2
    report = summarize(CONFIG, list(statuses.values()), tmp_path)
    assert not report.complete  # "e" never ran
    done = summarize(CONFIG, [statuses[t] for t in "abcd"], tmp_path)
    assert done.complete and done.best == "a" and done.pareto == ["a"]
    partial = summarize(CONFIG, [statuses["a"]], tmp_path)
    assert not partial.complete  # 1 of 4 expected trials
