"""What a sweep found: every trial's configuration and numbers, the Pareto front, the best trial, written out.

Outputs (all atomic): `sweep.json` (everything), `sweep.md` (tables and the Pareto-optimal configurations),
`pareto.png` (accuracy against each cost) and `best/` (a copy of the best trial's model, reports and hls4ml
config; the hls4ml project, which can be large, is linked).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.io import atomic_write_json, atomic_write_text
from tenfold.sweep.config import SweepConfig
from tenfold.sweep.pareto import LABELS, pareto_optimal, plot_sweep_front
from tenfold.sweep.trial import METRIC_KEYS, RECORD_FILE, TrialRecord

BEST_FILES = ("model.pt", "report.md", "report.json", "hls4ml_config.json", "csim_check.json", "layer_resources.png",
              "pareto.png", "rank_sparsity.png", RECORD_FILE)
BEST_LINKS = ("hls4ml_prj", "model.onnx")


@dataclass
class TrialOutcome:
    """One trial as the sweep saw it: status is completed, failed, crashed, stopped (by ASHA) or unfinished."""

    trial_id: str
    status: str
    overrides: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    completions: int = 0
    out_dir: str = ""

    def value(self, key: str) -> float:
        value = self.metrics.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "status": self.status, "overrides": self.overrides,
                "metrics": {k: _finite(v) for k, v in self.metrics.items()}, "error": self.error,
                "attempts": self.attempts, "completions": self.completions, "out_dir": self.out_dir}


@dataclass
class SweepReport:
    """The whole sweep; `complete` is False when it was interrupted (resume it with `--resume`)."""

    config: SweepConfig
    trials: list[TrialOutcome]
    out_dir: Path
    complete: bool = True
    pareto: list[str] = field(default_factory=list)
    best: str | None = None
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)

    def trial(self, trial_id: str) -> TrialOutcome:
        return next(t for t in self.trials if t.trial_id == trial_id)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.config.name, "complete": self.complete, "expected_trials": self.config.expected_trials,
                "counts": self.counts(), "metric": self.config.metric, "mode": self.config.mode,
                "objectives": self.config.objectives, "best": self.best, "pareto": self.pareto,
                "seconds": self.seconds, "trials": [t.to_dict() for t in self.trials], "outputs": self.outputs,
                "config": self.config.to_dict()}


def outcome(trial_id: str, tune_status: str, overrides: dict[str, Any], trials_dir: Path,
            tune_error: str | None = None, last_result: dict[str, Any] | None = None) -> TrialOutcome:
    """Combine Ray Tune's view of a trial with the record the trial kept in its folder.

    A trial that did not finish shows its last intermediate result (e.g. the baseline ASHA stopped it after).
    """
    out = trials_dir / trial_id
    record = TrialRecord.load(out, trial_id)
    if record.status in ("completed", "failed"):
        status = record.status
    elif tune_status == "ERROR":
        status = "crashed"
    elif tune_status == "TERMINATED":
        status = "stopped" if record.attempts else "unfinished"
    else:
        status = "unfinished"
    metrics = record.metrics or {k: v for k, v in (last_result or {}).items() if k in ("stage", *METRIC_KEYS)}
    return TrialOutcome(trial_id=trial_id, status=status, overrides=overrides, metrics=metrics,
                        error=record.error or (tune_error if status == "crashed" else None),
                        attempts=record.attempts, completions=record.completions, out_dir=str(out))


def summarize(config: SweepConfig, trials: list[TrialOutcome], out_dir: Path, *, seconds: float = 0.0) -> SweepReport:
    """Order the trials, find the Pareto front and the best trial, and decide whether the sweep is complete."""
    trials = sorted(trials, key=lambda t: t.trial_id)
    done = [t for t in trials if t.status == "completed"]
    accuracies = [t.value("val_accuracy") for t in done]
    costs = [[t.value(o) for o in config.objectives] for t in done]
    front = [done[i].trial_id for i in pareto_optimal(accuracies, costs)]
    settled = len(trials) >= config.expected_trials and all(t.status != "unfinished" for t in trials)
    return SweepReport(config=config, trials=trials, out_dir=out_dir, complete=settled, pareto=front,
                       best=_best(config, done), seconds=seconds)


def _best(config: SweepConfig, done: list[TrialOutcome]) -> str | None:
    """The best finished trial by the sweep's metric, among those that met their budget when any did."""
    scored = [t for t in done if not math.isnan(t.value(config.metric))]
    within = [t for t in scored if t.metrics.get("met_budget") is not False]
    pool = within or scored
    if not pool:
        return None
    sign = 1 if config.mode == "max" else -1
    return max(pool, key=lambda t: (sign * t.value(config.metric), -t.value(config.objectives[0]))).trial_id


# ---------------------------------------------------------------------------------------------- outputs


def write_outputs(report: SweepReport) -> dict[str, str]:
    """sweep.json, sweep.md, pareto.png and best/ in the sweep folder."""
    out = report.out_dir
    outputs: dict[str, str] = {}
    done = [t for t in report.trials if t.status == "completed"]
    if done:
        index = {t.trial_id: i for i, t in enumerate(report.trials)}
        names = [t.trial_id for t in report.trials]
        accuracies = [t.value("val_accuracy") if t.status == "completed" else math.nan for t in report.trials]
        costs = [[t.value(o) for o in report.config.objectives] for t in report.trials]
        outputs["pareto_png"] = plot_sweep_front(
            names, accuracies, costs, report.config.objectives, out / "pareto.png",
            front=[index[i] for i in report.pareto], best=index.get(report.best) if report.best else None)
    if report.best:
        outputs["best"] = copy_best(Path(report.trial(report.best).out_dir), out / "best")
    outputs["sweep_md"] = str(out / "sweep.md")
    outputs["sweep_json"] = str(out / "sweep.json")
    report.outputs = outputs
    atomic_write_text(out / "sweep.md", render_markdown(report))
    atomic_write_json(out / "sweep.json", report.to_dict())
    return outputs


def copy_best(trial_dir: Path, best_dir: Path) -> str:
    """Replace `best_dir` with copies of the trial's outputs (and links to its large ones)."""
    staging = best_dir.with_name(best_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in BEST_FILES:
        if (trial_dir / name).is_file():
            shutil.copy2(trial_dir / name, staging / name)
    for name in BEST_LINKS:
        if (trial_dir / name).exists():
            os.symlink(os.path.relpath(trial_dir / name, best_dir), staging / name)
    (staging / "TRIAL").write_text(f"{trial_dir}\n")
    shutil.rmtree(best_dir, ignore_errors=True)
    staging.rename(best_dir)
    return str(best_dir)


def table_rows(report: SweepReport) -> tuple[list[str], list[list[str]]]:
    """Headers and rows shared by the Markdown report and the terminal table."""
    keys = [dim.key for dim in report.config.space]
    objectives = [o for o in report.config.objectives if o != "ff"]
    headers = ["#", "trial", *keys, "status", "val acc", "test acc", *(LABELS[o] for o in objectives),
               "in budget", "front"]
    rows = []
    for number, trial in enumerate(report.trials, 1):
        met = trial.metrics.get("met_budget")
        mark = ("best " if trial.trial_id == report.best else "") + ("★" if trial.trial_id in report.pareto else "")
        status = f"stopped after {trial.metrics['stage']}" if trial.status == "stopped" and trial.metrics.get(
            "stage") else trial.status
        rows.append([str(number), trial.trial_id, *(_cell(trial.overrides.get(k)) for k in keys), status,
                     _percent(trial.value("val_accuracy")), _percent(trial.value("test_accuracy")),
                     *(_number(trial.value(o)) for o in objectives),
                     "yes" if met is True else "no" if met is False else "", mark.strip()])
    return headers, rows


def render_markdown(report: SweepReport) -> str:
    config = report.config
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts().items()))
    lines = [f"# Sweep {config.name}", "",
             f"- base recipe: {config.base_file or 'inline'}",
             f"- search: {config.search}, {len(report.trials)} of {config.expected_trials} trials ({counts})"
             + ("" if report.complete else " — **interrupted: continue with `tenfold sweep ... --resume`**"),
             f"- metric: {config.metric} ({config.mode}); scheduler: {config.scheduler}",
             f"- Pareto objectives: validation accuracy against {', '.join(LABELS[o] for o in config.objectives)}",
             f"- wall time: {report.seconds:.0f} s", ""]
    headers, rows = table_rows(report)
    lines += ["## Trials", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Pareto-optimal configurations", ""]
    if not report.pareto:
        lines.append("No trial finished yet.")
    for trial_id in report.pareto:
        trial = report.trial(trial_id)
        values = ", ".join(f"`{k}={_cell(v)}`" for k, v in trial.overrides.items()) or "the base recipe"
        costs = ", ".join(f"{LABELS[o]} {_number(trial.value(o))}" for o in config.objectives)
        lines.append(f"- **{trial_id}**: {values} — val {_percent(trial.value('val_accuracy'))}, "
                     f"test {_percent(trial.value('test_accuracy'))}, {costs}")
    if report.best:
        best = report.trial(report.best)
        lines += ["", "## Best", "",
                  f"{report.best} by {config.metric} ({config.mode}, preferring trials that met their budget): "
                  f"outputs copied to `best/` from `{best.out_dir}`."]
    failures = [t for t in report.trials if t.error]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {t.trial_id} ({t.status}): {t.error}" for t in failures]
    if "pareto_png" in report.outputs:
        lines += ["", "![accuracy against cost](pareto.png)"]
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _percent(value: float) -> str:
    return "" if math.isnan(value) else f"{100 * value:.2f}%"


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:,.0f}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
