"""A real sweep on Ray Tune (digits, 3 short trials): a worker is killed mid-trial, the sweep is interrupted
like Ctrl-C, then resumed — and every trial finishes exactly once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune")

from tenfold.errors import ConfigError
from tenfold.sweep.config import sweep_config_from_dict
from tenfold.sweep.runner import ray_session, run_sweep

RECIPE = {"model": {"name": "jet_mlp"}, "data": {"name": "digits"}, "train": {"epochs": 5, "lr": 0.003},
          "budget": "dsp<=0.5x", "tolerance": 0.1, "methods": ["prune"], "prune": {"steps": 1},
          "finetune": {"epochs": 1}, "export": {"hls4ml": False}}
SWEEP = {"base": RECIPE, "space": {"budget": {"grid": ["dsp<=0.3x", "dsp<=0.5x", "dsp<=0.7x"]}},
         "max_concurrent": 1, "max_failures": 1}


class Saboteur(threading.Thread):
    """Kills the first trial's worker once its baseline is saved; then sends SIGINT (like Ctrl-C) while the next
    trial is half-way (its baseline saved)."""

    def __init__(self, trials_dir: Path) -> None:
        super().__init__(daemon=True)
        self.trials_dir = trials_dir
        self.killed: str | None = None
        self.baseline_mtime: int | None = None
        self.interrupted: str | None = None
        self.interrupted_mtime: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.interrupted is None:
            for trial_dir in sorted(self.trials_dir.glob("*")):
                try:
                    record = json.loads((trial_dir / "trial.json").read_text())
                except (OSError, ValueError):
                    continue
                if record["status"] != "running" or not (trial_dir / "run_state.json").exists():
                    continue
                saved = (trial_dir / "stages" / "00_baseline.pt").stat().st_mtime_ns
                if self.killed is None:
                    self.killed, self.baseline_mtime = trial_dir.name, saved
                    os.kill(record["pid"], signal.SIGKILL)  # the Ray worker running this trial
                elif trial_dir.name != self.killed:
                    self.interrupted, self.interrupted_mtime = trial_dir.name, saved
                    os.kill(os.getpid(), signal.SIGINT)  # Ray Tune saves its state and returns
                    break
            time.sleep(0.05)


@pytest.fixture(scope="module")
def ray_local():
    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def sweep_run(ray_local, tmp_path_factory):
    config = sweep_config_from_dict(SWEEP)
    out = tmp_path_factory.mktemp("sweep") / "out"
    saboteur = Saboteur(out / "trials")
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # a late SIGINT must not end the test session
    try:
        saboteur.start()
        first = run_sweep(config, out)
        saboteur.done.set()
        saboteur.join(timeout=5)
        records_between = {p.parent.name: json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")}
        first_json = json.loads((out / "sweep.json").read_text())
        second = run_sweep(config, out, resume=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    return {"config": config, "out": out, "first": first, "first_json": first_json, "second": second,
            "saboteur": saboteur, "between": records_between}


def records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("trials/*/trial.json")}


def test_interrupted_sweep_reports_itself_incomplete(sweep_run):
    first, saboteur = sweep_run["first"], sweep_run["saboteur"]
    assert saboteur.killed is not None and saboteur.interrupted is not None
    assert not first.complete and not sweep_run["first_json"]["complete"]
    assert 1 <= first.counts().get("completed", 0) < 3
    # Tune stops running trials on SIGINT; a trial this short may still finish while Tune shuts down
    assert first.trial(saboteur.interrupted).status in ("unfinished", "completed")


def test_resume_finishes_every_trial_exactly_once(sweep_run):
    second, between = sweep_run["second"], sweep_run["between"]
    assert second.complete
    assert sorted(t.overrides["budget"] for t in second.trials) == ["dsp<=0.3x", "dsp<=0.5x", "dsp<=0.7x"]
    assert all(t.status == "completed" for t in second.trials)
    after = records(sweep_run["out"])
    assert len(after) == 3 and all(r["completions"] == 1 for r in after.values())
    for trial_id, record in between.items():
        if record["status"] == "completed":  # finished before the interruption: not started again
            assert after[trial_id]["attempts"] == record["attempts"]


def test_killed_worker_is_retried_and_its_run_resumes(sweep_run):
    saboteur, out = sweep_run["saboteur"], sweep_run["out"]
    record = records(out)[saboteur.killed]
    assert record["attempts"] >= 2 and record["completions"] == 1 and record["status"] == "completed"
    baseline = out / "trials" / saboteur.killed / "stages" / "00_baseline.pt"
    assert baseline.stat().st_mtime_ns == saboteur.baseline_mtime  # resumed after the baseline, not restarted


def test_trial_interrupted_half_way_is_not_run_again(sweep_run):
    saboteur, out = sweep_run["saboteur"], sweep_run["out"]
    record = records(out)[saboteur.interrupted]
    assert record["status"] == "completed" and record["completions"] == 1
    baseline = out / "trials" / saboteur.interrupted / "stages" / "00_baseline.pt"
    assert baseline.stat().st_mtime_ns == saboteur.interrupted_mtime


def test_results_front_and_best(sweep_run):
    from tenfold.train import load_model

    out, second = sweep_run["out"], sweep_run["second"]
    data = json.loads((out / "sweep.json").read_text())
    assert data["complete"] and data["counts"] == {"completed": 3} and len(data["trials"]) == 3
    assert data["pareto"] and set(data["pareto"]) <= {t["trial_id"] for t in data["trials"]}
    best = second.trial(second.best)
    report = json.loads((out / "best" / "report.json").read_text())
    assert report["snapshots"][-1]["val_accuracy"] == best.metrics["val_accuracy"]
    assert (out / "best" / "TRIAL").read_text().strip() == best.out_dir
    load_model(out / "best" / "model.pt")
    for trial in data["trials"]:  # reported numbers are the trial's own report
        final = json.loads((Path(trial["out_dir"]) / "report.json").read_text())["snapshots"][-1]
        assert trial["metrics"]["dsp"] == final["totals"]["dsp"]
    assert "## Pareto-optimal configurations" in (out / "sweep.md").read_text()
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # a tighter budget never costs more DSPs than a looser one here
    dsp = {t.overrides["budget"]: t.metrics["dsp"] for t in second.trials}
    assert dsp["dsp<=0.3x"] <= dsp["dsp<=0.7x"]


def test_resume_refuses_a_changed_sweep_and_an_empty_folder(sweep_run, tmp_path):
    changed = sweep_config_from_dict(SWEEP | {"base": RECIPE | {"prune": {"steps": 2}}})
    with pytest.raises(ConfigError, match=r"sweep file changed since it started \(base\.prune\.steps: was 1, now 2"):
        run_sweep(changed, sweep_run["out"], resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_sweep(sweep_run["config"], tmp_path / "empty", resume=True)
    with pytest.raises(ConfigError, match="not empty"):
        run_sweep(sweep_run["config"], sweep_run["out"])

