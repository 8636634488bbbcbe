"""`tenfold run`: one recipe, one budget, one folder with the compressed model and a report you can trust.

The run is a list of stages (prepare → each method in order, or one joint stage → verify → export). After
every stage the model, the HLS config and the snapshots so far are written atomically, so an interrupted
run resumes from the last finished stage and gives the same result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tenfold.errors import ConfigError
from tenfold.io import atomic_write_json, atomic_write_text, ensure_not_input
from tenfold.pipeline.config import RunConfig
from tenfold.pipeline.context import RunContext, budget_met, prepare_context
from tenfold.pipeline.outdir import prepare_output_dir
from tenfold.report import RunReport, Snapshot, render_markdown, take_snapshot, write_plots
from tenfold.train import load_model, save_checkpoint

STATE_FILE = "run_state.json"


@dataclass
class RunResult:
    """The compressed model, its HLS config, the report and where everything was written."""

    model: nn.Module
    hls_config: Any
    report: RunReport
    out_dir: Path
    input_shape: tuple[int, ...] = ()


def run(config: RunConfig, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False,
        progress: Any = True) -> RunResult:
    """Execute the recipe; see the module docstring for the stages and the files written."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    ensure_not_input(out_dir, [config.model.checkpoint, config.model.pretrained, config.data.path], what="output")
    if not _is_writer():  # under torchrun every rank computes, only rank 0 writes the requested folder
        out_dir = _private_folder(out_dir, resume)
    elif resume:
        if not (out_dir / STATE_FILE).exists():
            raise ConfigError(f"nothing to resume in {out_dir}: {STATE_FILE} is missing; run without --resume")
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        out_dir = prepare_output_dir(out_dir, overwrite=overwrite)
    ctx = prepare_context(config, out_dir, progress=progress)
    state = _load_state(out_dir) if resume else {"done": [], "snapshots": []}
    snapshots = [_snapshot_from_dict(s) for s in state["snapshots"]]
    model, hls = ctx.model, ctx.hls_config
    if state["done"]:
        model, hls = _restore(out_dir, state)
    else:
        snapshots.append(_evaluated_snapshot(ctx, model, hls, label="baseline", stage="baseline"))
        _save_state(out_dir, "baseline", model, hls, state, snapshots)
    ctx.baseline_val = snapshots[0].val_accuracy
    for stage in stage_names(config):
        if stage in state["done"]:
            continue
        stage_started = time.perf_counter()
        model, hls, extra = run_stage(stage, ctx, model, hls)
        snapshots += extra
        snapshots.append(_evaluated_snapshot(ctx, model, hls, label=stage, stage=stage,
                                             seconds=time.perf_counter() - stage_started,
                                             notes=ctx.stage_notes.pop(stage, None)))
        _save_state(out_dir, stage, model, hls, state, snapshots)
    report = RunReport(name=_run_name(config), budget=config.budget or config.prune.budget, snapshots=snapshots,
                       config=config.to_dict())
    if report.budget:
        report.budget_limits, report.met_budget = budget_met(ctx, report.budget, snapshots[-1])
    report.export = _export(ctx, model, hls, out_dir) if _is_writer() else {}
    report.outputs = _write_outputs(ctx, model, hls, report, out_dir)
    report.seconds = time.perf_counter() - started + state.get("seconds", 0.0)
    atomic_write_json(out_dir / "report.json", report.to_dict())
    atomic_write_text(out_dir / "report.md", render_markdown(report))
    if not _is_writer():
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)  # this rank's scratch copy; rank 0 wrote the real one
    return RunResult(model=model, hls_config=hls, report=report, out_dir=out_dir, input_shape=ctx.input_shape)


def _is_writer() -> bool:
    from tenfold.train.distributed import is_initialized, is_main_process

    return not is_initialized() or is_main_process()


def _private_folder(out_dir: Path, resume: bool) -> Path:
    """A scratch folder for a non-zero rank (with a copy of the saved state when resuming)."""
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="tenfold-rank-"))
    if resume and (out_dir / STATE_FILE).exists():
        shutil.copytree(out_dir, scratch, dirs_exist_ok=True)
    return scratch


def stage_names(config: RunConfig) -> list[str]:
    """The compression stages in the order they run."""
    return ["joint"] if config.strategy == "joint" else list(config.methods)


def run_stage(stage: str, ctx: RunContext, model: nn.Module, hls) -> tuple[nn.Module, Any, list[Snapshot]]:
    """Dispatch one stage; each returns the new model, the HLS config and snapshots of intermediate steps."""
    from tenfold.pipeline import stages

    handlers = {"prune": stages.prune_stage, "decompose": stages.decompose_stage,
                "quantize": stages.quantize_stage, "joint": stages.joint_stage}
    return handlers[stage](ctx, model, hls)


def _evaluated_snapshot(ctx: RunContext, model: nn.Module, hls, *, label: str, stage: str,
                        seconds: float = 0.0, notes: dict | None = None) -> Snapshot:
    """Accuracy (of the fixed-point model when the run changes precisions) and resources of `model`."""
    val, test = ctx.accuracy(model, hls, "val"), ctx.accuracy(model, hls, "test")
    notes = (notes or {}) | {"evaluation": "fixed-point" if ctx.fixed_point_evaluation else "float"}
    return take_snapshot(model, ctx.input_shape, hls, label=label, stage=stage, val_accuracy=val,
                         test_accuracy=test, seconds=seconds, notes=notes,
                         regeneration=ctx.config.decompose.regeneration)


def _run_name(config: RunConfig) -> str:
    model = config.model.name or Path(config.model.checkpoint or "model").stem
    methods = "joint" if config.strategy == "joint" else "+".join(config.methods)
    return f"{model} on {config.data.name}, {methods}"


# ---------------------------------------------------------------------------------------------- state on disk


def _save_state(out_dir: Path, stage: str, model: nn.Module, hls, state: dict, snapshots: list[Snapshot]) -> None:
    path = save_checkpoint(out_dir / "stages" / f"{len(state['done']):02d}_{stage}.pt", model,
                           metadata={"stage": stage})
    state["done"].append(stage)
    state["checkpoint"] = str(path.relative_to(out_dir))
    state["hls_config"] = _hls_to_dict(hls)
    state["snapshots"] = [s.to_dict() for s in snapshots]
    atomic_write_json(out_dir / STATE_FILE, state)


def _load_state(out_dir: Path) -> dict:
    import json

    try:
        return json.loads((out_dir / STATE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot resume: {out_dir / STATE_FILE} is unreadable ({exc}); start a new run") from None


def _restore(out_dir: Path, state: dict):
    model = load_model(out_dir / state["checkpoint"])
    return model, _hls_from_dict(state["hls_config"])


def _hls_to_dict(hls) -> dict[str, Any]:
    return {"hls4ml": hls.to_hls4ml(), "device": hls.device, "io_type": hls.io_type.value,
            "clock_period_ns": hls.clock_period_ns}


def _hls_from_dict(data: dict[str, Any]):
    from tenfold.hardware import HLSConfig

    return HLSConfig.from_hls4ml(data["hls4ml"], device=data["device"], io_type=data["io_type"],
                                 clock_period_ns=data["clock_period_ns"])


def _snapshot_from_dict(data: dict[str, Any]) -> Snapshot:
    from tenfold.report import LayerSnapshot

    layers = [LayerSnapshot(**{k: v for k, v in layer.items() if k != "sparsity"}) for layer in data["layers"]]
    return Snapshot(**(data | {"layers": layers}))


# ---------------------------------------------------------------------------------------------- outputs


def _export(ctx: RunContext, model: nn.Module, hls, out_dir: Path) -> dict[str, Any]:
    from tenfold.pipeline.handover import export_outputs

    return export_outputs(ctx, model, hls, out_dir)


def _write_outputs(ctx: RunContext, model: nn.Module, hls, report: RunReport, out_dir: Path) -> dict[str, str]:
    metadata = {"dataset": ctx.splits.name, "input_shape": list(ctx.input_shape),
                "test_accuracy": report.final.test_accuracy, "budget": report.budget}
    outputs = {"model": str(save_checkpoint(out_dir / "model.pt", model, metadata=metadata))}
    atomic_write_json(out_dir / "hls4ml_config.json", hls.to_hls4ml())
    outputs["hls4ml_config"] = str(out_dir / "hls4ml_config.json")
    outputs |= write_plots(report, out_dir)
    outputs["report_json"] = str(out_dir / "report.json")
    outputs["report_md"] = str(out_dir / "report.md")
    return outputs


def config_with_overrides(config: RunConfig, **overrides: Any) -> RunConfig:
    """A copy of `config` with dotted-key overrides, e.g. {'prune.steps': 2} (used by the CLI and sweeps)."""
    from tenfold.pipeline.config import run_config_from_dict

    data = dataclasses.asdict(config)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"{dotted}: {key!r} is not a section of the run config")
            node = node[key]
        if leaf not in node:
            raise ConfigError(f"{dotted}: unknown key")
        node[leaf] = value
    return run_config_from_dict(data)

