"""Everything a run's stages share: data, the starting model, the HLS config, the progress display."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tenfold.pipeline.config import RunConfig
from tenfold.report import Snapshot


@dataclass
class RunContext:
    """Read-only inputs of the stages."""

    config: RunConfig
    splits: Any
    model: nn.Module
    hls_config: Any
    input_shape: tuple[int, ...]
    out_dir: Path
    progress: Any
    baseline_cost: Any = None
    baseline_val: float = 0.0
    stage_notes: dict[str, Any] = field(default_factory=dict)
    frozen_teacher: nn.Module | None = field(default=None, repr=False)

    @property
    def fixed_point_evaluation(self) -> bool:
        """Whether accuracies are measured on the fixed-point model (when the run changes precisions)."""
        config = self.config
        return "quantize" in config.methods

    @property
    def seed(self) -> int:
        return self.config.seed

    def accuracy(self, model: nn.Module, hls, split: str = "val") -> float:
        """Accuracy on a split, of the fixed-point model when the run changes precisions (see above)."""
        from tenfold.train import evaluate

        if self.fixed_point_evaluation:
            from tenfold.quantize import quantize_model

            model = quantize_model(model, hls)
        return evaluate(model, getattr(self.splits, split)).accuracy

    def finetune_config(self, judged: bool = False):
        """The recipe's fine-tuning settings. ``judged``: the result is then checked against the tolerance on the
        validation set, so training ends on its last epoch (picking the best epoch on that same set would make
        the check optimistic)."""
        config = self.config.finetune.to_train_config(self.seed)
        return dataclasses.replace(config, restore_best=False) if judged else config

    def teacher(self) -> nn.Module | None:
        """The starting model, frozen, when fine-tuning distils from it (`finetune.distill_alpha` > 0)."""
        if self.config.finetune.distill_alpha <= 0:
            return None
        if self.frozen_teacher is None:
            from tenfold.train.augment import frozen_teacher

            self.frozen_teacher = frozen_teacher(self.model)
        return self.frozen_teacher


def prepare_context(config: RunConfig, out_dir: Path, *, progress: Any = True) -> RunContext:
    """Load the data, build (and if asked, train) the model, and make the HLS config for it."""
    from tenfold.data import load_dataset
    from tenfold.hardware import estimate
    from tenfold.train.progress import RichProgressReporter

    if progress is True:
        progress = RichProgressReporter(log_lines=False)
    data = config.data
    kwargs: dict[str, Any] = {"seed": config.seed, "val_fraction": data.val_fraction} | data.options
    if data.max_train is not None:
        kwargs["max_train"] = data.max_train
    if data.max_test is not None:
        kwargs["max_test"] = data.max_test
    splits = load_dataset(data.name, data.path, **kwargs)
    model = _build_model(config, splits)
    if config.train is not None:
        from tenfold.train import fit

        torch.manual_seed(config.seed)
        fit(model, splits.train, splits.val, config.train.to_train_config(config.seed), progress=progress)
    hls = _hls_config(config, model, splits.input_shape)
    ctx = RunContext(config=config, splits=splits, model=model, hls_config=hls, input_shape=splits.input_shape,
                     out_dir=out_dir, progress=progress)
    ctx.baseline_cost = estimate(model, splits.input_shape, hls)
    return ctx


def _build_model(config: RunConfig, splits) -> nn.Module:
    from tenfold.models import kwargs_for_data
    from tenfold.train import load_model

    section = config.model
    if section.checkpoint is not None:
        return load_model(Path(section.checkpoint))
    torch.manual_seed(config.seed)
    kwargs = kwargs_for_data(section.name, splits.input_shape, splits.num_classes) | section.options
    return load_model(section.name, pretrained=section.pretrained, **kwargs)


def _hls_config(config: RunConfig, model: nn.Module, input_shape: tuple[int, ...]):
    from tenfold.hardware import make_config
    from tenfold.hardware.estimate import uniform_reuse_config

    hw = config.hardware
    explicit = _read_hls4ml(Path(hw.hls4ml_config)) if hw.hls4ml_config else None
    hls = make_config(device=hw.device, precision=hw.precision, reuse_factor=hw.reuse_factor, strategy=hw.strategy,
                      io_type=hw.io_type, clock_period_ns=hw.clock_period_ns, hls4ml_config=explicit)
    return hls if explicit else uniform_reuse_config(hls, model, input_shape)


def budget_met(ctx: RunContext, budget: str, snapshot: Snapshot) -> tuple[dict[str, float], bool]:
    """Resolve the budget against the baseline and check the snapshot against every limit."""
    from tenfold.prune import Budget

    baseline = ctx.baseline_cost
    params = {layer.name: layer.n_nonzero for layer in baseline.layers if layer.n_weights}
    resolved = Budget.parse(budget).resolve(baseline, params)
    layers = {layer.name: layer for layer in snapshot.layers}
    limits, met = {}, True
    for limit, capacity in resolved:
        limits[limit.describe()] = capacity
        if limit.resource == "params":
            use = layers[limit.layer].stored_parameters if limit.layer else sum(
                layer.stored_parameters for layer in snapshot.layers)
        elif limit.layer:
            use = getattr(layers[limit.layer], limit.resource)
        else:
            use = snapshot.totals[limit.resource]
        met = met and use <= capacity + 1e-6
    return limits, met


def _read_hls4ml(path: Path) -> dict[str, Any]:
    """An hls4ml-style config file (YAML or JSON); its HLSConfig section when it has one."""
    from tenfold.io import read_yaml_mapping

    loaded = read_yaml_mapping(path, what="hardware.hls4ml_config", hint="hls4ml's hls_config with a 'Model' "
                               "section")
    return loaded.get("HLSConfig", loaded)
