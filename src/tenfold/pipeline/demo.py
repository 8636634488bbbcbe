"""The main job on the embedded default data (scikit-learn digits): what `make demo` runs.

It trains tenfold's reference architectures on digits and writes checkpoints plus a JSON report.
Later stages (estimate, prune, decompose, quantize, export) plug in here as they land.
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
    """What the demo trains; the defaults finish in well under a minute on 2 CPU cores."""

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
    prune_model: str = "jet_mlp"
    prune_budget: str = "dsp<=0.25x"
    prune_steps: int = 3
    prune_tolerance: float = 0.02  # 2 points: the digits validation split has only 180 images


@dataclass
class DemoModelResult:
    """One trained model of the demo."""

    model: str
    architecture: str
    parameters: int
    val_accuracy: float
    test_accuracy: float
    train_seconds: float
    epochs_run: int
    checkpoint: str
    hardware: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    """Everything the demo produced and where it lies."""

    dataset: dict[str, Any]
    models: list[DemoModelResult] = field(default_factory=list)
    out_dir: str = ""
    report_path: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_demo(config: DemoConfig | None = None, *, progress: bool | ProgressReporter = True) -> DemoResult:
    """Train the reference models on digits, evaluate them and write checkpoints and `report.json`."""
    from tenfold.data import load_digits
    from tenfold.hardware import estimate, make_config
    from tenfold.hardware.estimate import uniform_reuse_config
    from tenfold.models import create, kwargs_for_data

    config = config or DemoConfig()
    if progress is True:  # bars, but no per-epoch lines: the summary table says what matters
        progress = RichProgressReporter(log_lines=False)
    started = time.perf_counter()
    out_dir = prepare_output_dir(config.out_dir, overwrite=config.overwrite, auto_suffix=not config.overwrite)
    splits = load_digits(seed=config.seed)
    result = DemoResult(dataset=splits.summary(), out_dir=str(out_dir))
    train_config = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer="adam", seed=config.seed
    )
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
        if name == config.prune_model and config.prune_budget:
            result.models.append(_prune_stage(config, model, splits, hls, out_dir, progress))
    result.seconds = time.perf_counter() - started
    result.report_path = str(out_dir / "report.json")
    payload = result.to_dict() | {
        "train_config": train_config.to_dict(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
    }
    atomic_write_json(result.report_path, payload)
    return result


def _prune_stage(config: DemoConfig, model, splits, hls, out_dir: Path, progress) -> DemoModelResult:
    """Prune the trained model for DSPs with the knapsack pruner and price the result."""
    from tenfold.hardware import estimate
    from tenfold.hardware.estimate import uniform_reuse_config
    from tenfold.prune import PruneConfig, Pruner

    hls = uniform_reuse_config(hls, model, splits.input_shape)
    prune_config = PruneConfig(budget=config.prune_budget, structure="pattern", steps=config.prune_steps,
                               tolerance=config.prune_tolerance, seed=config.seed,
                               finetune=TrainConfig(epochs=3, lr=1e-3, seed=config.seed))
    pruned = Pruner(prune_config, hls, splits.input_shape).fit(model, splits.train, splits.val, progress=progress)
    test = evaluate(pruned.model, splits.test)
    cost = estimate(pruned.model, splits.input_shape, hls)
    atomic_write_json(out_dir / f"{config.prune_model}_pruned_report.json", pruned.report.to_dict())
    checkpoint = save_checkpoint(out_dir / f"{config.prune_model}_pruned.pt", pruned.model, metadata={
        "dataset": splits.name, "input_shape": list(splits.input_shape), "test_accuracy": test.accuracy,
        "budget": config.prune_budget})
    hardware = cost.totals | {"latency_ns": cost.latency_ns, "latency_cycles": cost.latency_cycles}
    hardware |= _export_stage(pruned.model, hls, splits, out_dir)
    saved = 1 - cost.totals["dsp"] / max(pruned.report.baseline_resources["dsp"], 1)
    return DemoModelResult(
        model=f"{config.prune_model} pruned",
        architecture=f"knapsack pruning, {config.prune_budget}: {100 * saved:.0f}% fewer DSP",
        parameters=int(sum(int((p != 0).sum()) for p in pruned.model.parameters())),
        val_accuracy=pruned.report.final_accuracy,
        test_accuracy=test.accuracy,
        train_seconds=pruned.report.seconds,
        epochs_run=len(pruned.report.steps),
        checkpoint=str(checkpoint),
        hardware=hardware,
    )


def _export_stage(model, hls, splits, out_dir: Path) -> dict:
    """Write the hls4ml project and compare its compiled C simulation with tenfold's emulation."""
    import shutil

    from tenfold.errors import TenfoldError
    from tenfold.export import check_bit_exact, export_hls4ml

    if shutil.which("g++") is None:
        return {"csim": "skipped: g++ not found"}
    try:
        project, quantized = export_hls4ml(model.eval(), hls, splits.input_shape, out_dir / "hls4ml_prj")
        check = check_bit_exact(project, quantized, hls, splits.test.tensors[0])
    except TenfoldError as exc:
        return {"csim": f"failed: {exc}"}
    atomic_write_json(out_dir / "csim_check.json", check.__dict__ | {"bit_exact": check.bit_exact})
    return {"csim": "bit-exact" if check.bit_exact else f"{check.mismatched_values} mismatches",
            "csim_samples": check.samples, "csim_compile_seconds": project.compile_seconds}


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
