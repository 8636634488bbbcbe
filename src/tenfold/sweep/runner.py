"""Run a sweep on Ray Tune: an embedded local Ray (or a cluster), checkpointed so `--resume` loses nothing.

Layout of the sweep folder:

    sweep_config.json          what defines the trials (a resumed sweep must match it)
    tune/<name>/               Ray Tune's experiment state (Tuner storage; what `--resume` restores)
    trials/<trial_id>/         each trial's `tenfold run` outputs and trial.json
    sweep.json, sweep.md, pareto.png, best/

Trials run in other processes (and, on a cluster, other machines): the sweep folder must be on storage every
node sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tenfold.errors import ConfigError, TenfoldError
from tenfold.io import atomic_write_json
from tenfold.pipeline.outdir import prepare_output_dir
from tenfold.sweep.config import SweepConfig
from tenfold.sweep.results import SweepReport, outcome, summarize, write_outputs

INSTALL_HINT = "pip install 'tenfold[distributed]'"
NAMESPACE = "tenfold"
IDENTITY_FILE = "sweep_config.json"
OWN_OUTPUTS = ("tune", "trials", "best", "sweep.json", "sweep.md", "pareto.png", IDENTITY_FILE)

Log = Callable[[str], None]


class DistributedUnavailable(TenfoldError):
    """Ray Tune (or Optuna) is not installed."""

    def __init__(self, what: str = "tenfold sweep needs Ray Tune") -> None:
        super().__init__(f"{what}; install it with: {INSTALL_HINT}")


def require_ray() -> None:
    """Fail with the install command when Ray Tune is missing."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise DistributedUnavailable() from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Use a running Ray if this process has one; else join `address`, or start (and stop) a private local Ray."""
    import ray

    if ray.is_initialized():
        yield
        return
    temp_dir = None
    try:
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        else:
            # unix socket paths must stay under 107 characters, so Ray's session lives in a short /tmp folder
            temp_dir = tempfile.mkdtemp(prefix="tf-ray-", dir="/tmp" if Path("/tmp").is_dir() else None)
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     namespace=NAMESPACE, _temp_dir=temp_dir)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = f"connect to the Ray cluster at {address}" if address else "start a local Ray"
        raise TenfoldError(f"could not {where}: {exc}; check --address, or run without it") from None
    try:
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def run_sweep(config: SweepConfig, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False,
              address: str | None = None, num_cpus: int | None = None, log: Log | None = None) -> SweepReport:
    """Run (or resume) the sweep into `out_dir`; returns the report (`complete` is False after an interruption)."""
    require_ray()
    from tenfold.sweep import tune_log
    from tenfold.sweep.space import search_algorithm, trial_scheduler

    started = time.perf_counter()
    out = Path(out_dir).resolve()
    experiment = out / "tune" / config.name
    searcher, scheduler = search_algorithm(config), trial_scheduler(config)  # config errors before Ray starts
    previous_seconds = _prepare_folder(config, out, experiment, overwrite=overwrite, resume=resume)
    if num_cpus is None and not address:
        num_cpus = max(os.cpu_count() or 1, (config.max_concurrent or 1) * config.resources_per_trial.cpus)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # lets verbose=0 keep Tune's own tables quiet
    with tune_log.logging_to(log), ray_session(address, num_cpus):
        tuner = _tuner(config, out, experiment, searcher, scheduler, restore=resume)
        tuner.fit()
        trials = _collect(config, experiment, out / "trials")
    report = summarize(config, trials, out, seconds=previous_seconds + time.perf_counter() - started)
    write_outputs(report)
    return report


def _prepare_folder(config: SweepConfig, out: Path, experiment: Path, *, overwrite: bool, resume: bool) -> float:
    """Check a resume against the stored sweep, or make a fresh folder; returns wall time spent before."""
    from ray import tune

    identity = json.loads(json.dumps(config.identity(), default=str))
    if resume:
        if not tune.Tuner.can_restore(str(experiment)):
            raise ConfigError(f"nothing to resume in {out}: no Ray Tune state in {experiment}; run without --resume")
        stored = json.loads((out / IDENTITY_FILE).read_text()) if (out / IDENTITY_FILE).exists() else identity
        if stored != identity:
            change = _first_difference(stored, identity)
            raise ConfigError(f"cannot resume {out}: the sweep file changed since it started ({change}); "
                              "undo the change, or start a new sweep with another --out")
        previous = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else {}
        return float(previous.get("seconds", 0.0))
    prepare_output_dir(out, overwrite=overwrite)
    for name in OWN_OUTPUTS:  # --overwrite replaces an earlier sweep's outputs, not the user's other files
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    atomic_write_json(out / IDENTITY_FILE, identity)
    return 0.0


def _tuner(config: SweepConfig, out: Path, experiment: Path, searcher: Any, scheduler: Any, *, restore: bool):
    from ray import tune

    from tenfold.sweep.space import encoded_keys, param_space
    from tenfold.sweep.trial import tune_trainable
    from tenfold.sweep.tune_log import TrialLog

    cpus = config.resources_per_trial.cpus
    trainable = tune.with_resources(
        tune.with_parameters(tune_trainable, base=config.base, trials_dir=str(out / "trials"),
                             encoded=encoded_keys(config), cpus=cpus),
        {"cpu": cpus})
    if restore:
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=param_space(config),
        tune_config=tune.TuneConfig(metric=config.metric, mode=config.mode, search_alg=searcher, scheduler=scheduler,
                                    num_samples=config.num_samples,
                                    max_concurrent_trials=config.max_concurrent if config.search == "optuna" else None,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=config.name, storage_path=str(experiment.parent), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=config.max_failures),
                                  callbacks=[TrialLog()]),
    )


def _collect(config: SweepConfig, experiment: Path, trials_dir: Path) -> list:
    """Every trial Tune knows of, joined with the record each trial kept in its folder."""
    from ray.tune import ExperimentAnalysis

    from tenfold.sweep.space import encoded_keys, trial_overrides

    analysis = ExperimentAnalysis(str(experiment), default_metric=config.metric, default_mode=config.mode)
    encoded = encoded_keys(config)
    return [outcome(trial.trial_id, trial.status, trial_overrides(dict(trial.config), encoded), trials_dir,
                    tune_error=_tune_error(trial), last_result=trial.last_result) for trial in analysis.trials]


def _tune_error(trial) -> str | None:
    with contextlib.suppress(Exception):
        text = (Path(trial.path) / "error.txt").read_text().strip().splitlines()
        return text[-1] if text else None
    return None


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.') or 'sweep'}: was {old!r}, now {new!r}"
