"""One sweep trial: a full `tenfold run` of the base recipe with the trial's overrides, in its own folder.

The trial reports to Ray Tune after every pipeline stage (so ASHA can stop weak trials early) through a silent
progress reporter that notices when `run_state.json` gains a stage. A trial survives its worker dying: the
retry resumes the pipeline from `run_state.json`, and a trial whose run already finished is never run again —
its recorded result is reported instead. `trial.json` counts attempts and finished runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.errors import TenfoldError
from tenfold.io import atomic_write_json
from tenfold.pipeline.config import RunConfig
from tenfold.train.progress import ProgressReporter

RECORD_FILE = "trial.json"
STATE_FILE = "run_state.json"  # written by tenfold.pipeline.run after every stage
RESOURCES = ("dsp", "bram18", "lut", "ff")
METRIC_KEYS = ("val_accuracy", "test_accuracy", *RESOURCES, "latency_cycles", "stored_parameters")

Report = Callable[[dict[str, Any]], None]


@dataclass
class TrialRecord:
    """What `trial.json` keeps about a trial across worker restarts and sweep resumes."""

    trial_id: str
    overrides: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"  # running | completed | failed (a tenfold error) | crashed (anything else)
    attempts: int = 0
    completions: int = 0
    pid: int | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def load(cls, trial_dir: Path, trial_id: str) -> TrialRecord:
        path = trial_dir / RECORD_FILE
        if not path.exists():
            return cls(trial_id=trial_id)
        return cls(**json.loads(path.read_text()))

    def save(self, trial_dir: Path) -> None:
        atomic_write_json(trial_dir / RECORD_FILE, dataclasses.asdict(self))


def snapshot_metrics(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The numbers a trial reports, from a snapshot as stored in run_state.json / report.json."""
    totals = snapshot.get("totals", {})
    return {"stage": snapshot.get("label", ""), "val_accuracy": snapshot.get("val_accuracy"),
            "test_accuracy": snapshot.get("test_accuracy"),
            **{key: float(totals.get(key, 0.0)) for key in RESOURCES},
            "latency_cycles": snapshot.get("latency_cycles"), "stored_parameters": snapshot.get("stored_parameters")}


def failure_metrics(message: str) -> dict[str, Any]:
    """A final result for a recipe tenfold rejected: NaN everywhere, so searchers mark it failed."""
    return {"stage": "failed", **{key: math.nan for key in METRIC_KEYS}, "finished": 1, "met_budget": None,
            "error": message}


class StageReporter(ProgressReporter):
    """A silent progress reporter that reports each finished stage (all but the last) as it appears on disk."""

    def __init__(self, out_dir: Path, stages: list[str], report: Report) -> None:
        self.out_dir = Path(out_dir)
        self.intermediate = stages[:-1]  # the last stage is the final result, reported after the run
        self.report = report
        self.reported: list[str] = []
        self._seen: tuple[int, int, int] | None = None

    def add_task(self, description: str, total: int | None = None, completed: int = 0) -> Any:
        self.poll()
        return None

    def log(self, message: str) -> None:
        self.poll()

    def poll(self) -> None:
        """Report stages that finished since the last look (cheap: one stat when nothing changed)."""
        path = self.out_dir / STATE_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # atomic writes replace the inode
        if signature == self._seen:
            return
        self._seen = signature
        try:
            snapshots = json.loads(path.read_text())["snapshots"]
        except (OSError, ValueError, KeyError):
            return  # a stage is being written; the next poll sees it
        self.report_stages(snapshots)

    def report_stages(self, snapshots: list[dict[str, Any]]) -> None:
        """Report, in order, every intermediate stage in `snapshots` not reported yet."""
        by_stage = {s.get("stage"): s for s in snapshots}
        for stage in self.intermediate:
            if stage in self.reported:
                continue
            if stage not in by_stage:
                return
            self.reported.append(stage)
            self.report(snapshot_metrics(by_stage[stage]) | {"finished": 0, "met_budget": None, "error": ""})


def run_trial(trial_id: str, overrides: dict[str, Any], base: RunConfig, trials_dir: str | Path, *, cpus: int = 1,
              report: Report) -> TrialRecord:
    """Run (or resume, or recall) one trial into `trials_dir/trial_id` and report its results."""
    import torch

    from tenfold.pipeline.run import config_with_overrides, run, stage_names

    out = Path(trials_dir) / trial_id
    out.mkdir(parents=True, exist_ok=True)
    record = TrialRecord.load(out, trial_id)
    if record.status in ("completed", "failed"):  # finished before an interruption: never run twice
        report(record.metrics)
        return record
    record.overrides, record.attempts, record.pid = overrides, record.attempts + 1, os.getpid()
    record.status, record.error = "running", None
    record.save(out)
    started = time.perf_counter()
    torch.set_num_threads(cpus)
    try:
        config = config_with_overrides(base, **overrides)
        stages = ["baseline", *stage_names(config)]
        reporter = StageReporter(out, stages, report)
        resume = (out / STATE_FILE).exists()
        result = run(config, out, overwrite=not resume, resume=resume, progress=reporter)
    except TenfoldError as exc:
        record.status, record.error, record.metrics = "failed", str(exc), failure_metrics(str(exc))
        record.seconds += time.perf_counter() - started
        record.save(out)
        report(record.metrics)
        return record
    except Exception as exc:  # a crash: recorded, then left to Ray's retries
        record.status, record.error = "crashed", f"{type(exc).__name__}: {exc}"
        record.seconds += time.perf_counter() - started
        record.save(out)
        raise
    reporter.report_stages([s.to_dict() for s in result.report.snapshots])
    final = snapshot_metrics(result.report.final.to_dict())
    record.metrics = final | {"finished": 1, "met_budget": result.report.met_budget, "error": ""}
    record.status, record.completions = "completed", record.completions + 1
    record.seconds += time.perf_counter() - started
    record.save(out)
    report(record.metrics)
    return record


def tune_trainable(config: dict[str, Any], *, base: RunConfig, trials_dir: str, encoded: list[str],
                   cpus: int) -> None:
    """The Ray Tune function trainable: the trial's id names its folder, `tune.report` receives its results."""
    from ray import tune

    from tenfold.sweep.space import trial_overrides

    trial_id = tune.get_context().get_trial_id()
    run_trial(trial_id, trial_overrides(config, encoded), base, trials_dir, cpus=cpus, report=tune.report)
