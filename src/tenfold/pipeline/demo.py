"""The main job on the embedded default data (scikit-learn digits): what `make demo` runs.

It trains tenfold's reference architectures on digits, prices them with the hardware model, compresses them
with two `tenfold run` recipes (joint pruning + precision for DSPs; quantized decomposition for memory), exports
both to hls4ml with a bit-exact C-simulation check, and writes checkpoints, reports and plots.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tenfold.io import atomic_write_json
from tenfold.pipeline.outdir import prepare_output_dir
from tenfold.train import TrainConfig, evaluate, fit, save_checkpoint
from tenfold.train.progress import ProgressReporter, RichProgressReporter


@dataclass
class DemoConfig:
    """What the demo trains and compresses; the defaults finish in a few minutes on 2 CPU cores."""

    out_dir: Path = Path("runs/demo")
    models: tuple[str, ...] = ("jet_mlp", "lenet")
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    overwrite: bool = False
    device: str = "xcvu13p"
    precision: str = "fixed<16,6>"
    strategy: str = "Latency"
    reuse_factor: int = 1
    finetune_epochs: int = 3
    joint_budget: str = "dsp<=0.2x,lut<=0.6x"
    decompose_target: str = "3x"
    tolerance: float = 0.02  # 2 points: the digits validation split has only 180 images


@dataclass
class DemoModelResult:
    """One trained or compressed model of the demo."""

    model: str
    architecture: str
    parameters: int
    val_accuracy: float
    test_accuracy: float
    train_seconds: float
    epochs_run: int
    checkpoint: str
    hardware: dict[str, Any] = field(default_factory=dict)
    report: str = ""


@dataclass
class DemoResult:
    """Everything the demo produced and where it lies."""

    dataset: dict[str, Any]
    models: list[DemoModelResult] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)  # RunReport of each compression recipe
    out_dir: str = ""
    report_path: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["runs"] = [run.outputs for run in self.runs]
        return data


def run_demo(config: DemoConfig | None = None, *, progress: bool | ProgressReporter = True) -> DemoResult:
    """Train the reference models on digits, then compress them with two `tenfold run` recipes.

    1. the jet-tagger MLP architecture: joint knapsack over DSP-pattern pruning and narrower weights under a DSP
       and LUT budget (Latency strategy), exported to hls4ml and checked bit for bit in C simulation;
    2. LeNet: quantized CP decomposition to fewer stored parameters (Resource strategy, weights in BRAM),
       fine-tuned, exported the same way.
    """
    from tenfold.data import load_digits
    from tenfold.hardware import estimate, make_config
    from tenfold.hardware.estimate import uniform_reuse_config
    from tenfold.models import create, kwargs_for_data

    config = config or DemoConfig()
    if progress is True:  # bars, but no per-epoch lines: the summary tables say what matters
        progress = RichProgressReporter(log_lines=False)
    started = time.perf_counter()
    out_dir = prepare_output_dir(config.out_dir, overwrite=config.overwrite, auto_suffix=not config.overwrite)
    splits = load_digits(seed=config.seed)
    result = DemoResult(dataset=splits.summary(), out_dir=str(out_dir))
    train_config = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer="adam", seed=config.seed
    )
    checkpoints = {}
    for name in config.models:
        torch.manual_seed(config.seed)
        model = create(name, **kwargs_for_data(name, splits.input_shape, splits.num_classes))
        report = fit(model, splits.train, splits.val, train_config, progress=progress)
        test = evaluate(model, splits.test)
        hls = make_config(device=config.device, precision=config.precision, strategy=config.strategy,
                          reuse_factor=config.reuse_factor)
        cost = estimate(model, splits.input_shape, uniform_reuse_config(hls, model, splits.input_shape))
        atomic_write_json(out_dir / f"{name}_estimate.json", cost.to_dict())
        checkpoint = save_checkpoint(
            out_dir / f"{name}.pt",
            model,
            metadata={"dataset": splits.name, "input_shape": list(splits.input_shape), "test_accuracy": test.accuracy,
                      "train_config": train_config.to_dict()},
        )
        checkpoints[name] = checkpoint
        result.models.append(
            DemoModelResult(
                model=name,
                architecture=_describe(model),
                parameters=sum(p.numel() for p in model.parameters()),
                val_accuracy=report.best_val_accuracy or 0.0,
                test_accuracy=test.accuracy,
                train_seconds=report.seconds,
                epochs_run=len(report.history),
                checkpoint=str(checkpoint),
                hardware=cost.totals | {"latency_ns": cost.latency_ns, "latency_cycles": cost.latency_cycles},
            )
        )
    for label, recipe in _recipes(config, checkpoints):
        run_report = _compress(label, recipe, out_dir, progress)
        result.runs.append(run_report)
        result.models.append(_row(label, run_report))
    result.seconds = time.perf_counter() - started
    result.report_path = str(out_dir / "report.json")
    payload = result.to_dict() | {
        "train_config": train_config.to_dict(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
    }
    atomic_write_json(result.report_path, payload)
    return result


def _recipes(config: DemoConfig, checkpoints: dict[str, Path]) -> list[tuple[str, dict[str, Any]]]:
    """The two compression recipes, as `tenfold run` YAML would spell them."""
    common = {"data": {"name": "digits"}, "seed": config.seed, "tolerance": config.tolerance,
              "finetune": {"epochs": config.finetune_epochs, "lr": 1e-3},
              "export": {"hls4ml": True, "check_samples": 100}}
    recipes = []
    if "jet_mlp" in checkpoints:
        recipes.append(("jet_mlp joint (prune+quantize)", common | {
            "model": {"checkpoint": str(checkpoints["jet_mlp"])},
            "hardware": {"device": config.device, "precision": config.precision, "strategy": "Latency",
                         "reuse_factor": 1},
            "budget": config.joint_budget, "strategy": "joint", "methods": ["prune", "quantize"],
            "joint": {"prune_levels": [0.5, 0.75, 0.9], "widths": [12, 10, 8], "rounds": 2}}))
    if "lenet" in checkpoints:
        recipes.append(("lenet decomposed", common | {
            "model": {"checkpoint": str(checkpoints["lenet"])},
            "hardware": {"device": config.device, "precision": config.precision, "strategy": "Resource",
                         "reuse_factor": 4},
            "methods": ["decompose"],
            "decompose": {"target": config.decompose_target, "bits": 8, "method": "cp3", "sensitivity_batches": 2,
                          "n_iter_max": 30}}))
    return recipes


def _compress(label: str, recipe: dict[str, Any], out_dir: Path, progress):
    from tenfold.pipeline.config import run_config_from_dict
    from tenfold.pipeline.run import run

    folder = out_dir / label.split(" (")[0].replace(" ", "_")
    return run(run_config_from_dict(recipe), folder, progress=progress).report


def _row(label: str, report) -> DemoModelResult:
    final = report.final
    reduction = report.reduction()
    summary = ", ".join(f"{100 * reduction[key]:.0f}% fewer {name}" for key, name in (
        ("dsp", "DSP"), ("bram18", "BRAM18"), ("parameters", "stored params")) if reduction[key] > 0.005)
    hardware = final.totals | {"latency_cycles": final.latency_cycles, "latency_ns": final.latency_cycles * 5.0}
    hardware |= {key: value for key, value in report.export.items() if key in {"csim", "csim_samples"}}
    return DemoModelResult(model=label, architecture=summary or "no reduction within the tolerance",
                           parameters=final.stored_parameters, val_accuracy=final.val_accuracy or 0.0,
                           test_accuracy=final.test_accuracy or 0.0, train_seconds=report.seconds,
                           epochs_run=0, checkpoint=report.outputs.get("model", ""), hardware=hardware,
                           report=report.outputs.get("report_md", ""))


def _describe(model: torch.nn.Module) -> str:
    """Layer widths in a line, e.g. 'Linear 64-64-32-32-10' or 'Conv 1-6-16, Linear 64-120-84-10'."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    parts = []
    if convs:
        parts.append("Conv " + "-".join([str(convs[0].in_channels)] + [str(c.out_channels) for c in convs]))
    if linears:
        parts.append("Linear " + "-".join([str(linears[0].in_features)] + [str(m.out_features) for m in linears]))
    return ", ".join(parts)
