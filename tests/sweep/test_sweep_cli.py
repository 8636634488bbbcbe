"""`tenfold sweep` on the command line: the install hint without Ray, config errors before Ray starts, and
(slow) a whole sweep with Optuna and ASHA run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tenfold.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
RECIPE = {"model": {"name": "jet_mlp"}, "data": {"name": "digits"}, "train": {"epochs": 5, "lr": 0.003},
          "budget": "dsp<=0.5x", "tolerance": 0.1, "methods": ["prune"], "prune": {"steps": 1},
          "finetune": {"epochs": 1}, "export": {"hls4ml": False}}


def write_sweep(path: Path, **extra) -> Path:
    path.write_text(yaml.safe_dump({"base": RECIPE, "space": {"budget": {"grid": ["dsp<=0.3x", "dsp<=0.6x"]}}}
                                   | extra))
    return path


def test_without_ray_it_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    code = main(["sweep", str(write_sweep(tmp_path / "s.yaml")), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "pip install 'tenfold[distributed]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_space_key_stops_before_ray_starts(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", space={"hardware.reuse": {"grid": [1, 2]}})
    code = main(["sweep", str(sweep), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "space.hardware.reuse: not a key of the run recipe; did you mean 'hardware.reuse_factor'?" in err
    assert not (tmp_path / "out").exists()
    import ray

    assert not ray.is_initialized()


def test_output_folder_is_required(tmp_path, capsys):
    assert main(["sweep", str(write_sweep(tmp_path / "s.yaml"))]) == 2
    assert "no output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_optuna_and_asha_sweep_from_the_command_line(tmp_path):
    pytest.importorskip("optuna")
    sweep = write_sweep(tmp_path / "s.yaml", space={"budget": {"choice": ["dsp<=0.3x", "dsp<=0.6x"]},
                                                    "finetune.lr": {"loguniform": [1e-4, 1e-2]}},
                        search="optuna", num_samples=4, scheduler={"type": "asha", "grace_period": 1},
                        max_concurrent=2)
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "tenfold", "sweep", str(sweep), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert data["complete"] and len(data["trials"]) == 4
    assert set(data["counts"]) <= {"completed", "stopped"} and data["counts"].get("completed", 0) >= 1
    for trial in data["trials"]:
        assert 1e-4 <= trial["overrides"]["finetune.lr"] <= 1e-2
        assert trial["overrides"]["budget"] in ("dsp<=0.3x", "dsp<=0.6x")
    assert "Pareto-optimal" in result.stdout and (tmp_path / "out" / "best" / "model.pt").exists()


def test_summary_table_prints_list_values_and_marks_the_front(tmp_path, capsys):
    from tenfold.cli.sweep_cmd import print_sweep_summary
    from tenfold.sweep.config import sweep_config_from_dict
    from tenfold.sweep.results import TrialOutcome, summarize

    config = sweep_config_from_dict({"base": RECIPE | {"strategy": "joint", "methods": ["prune", "quantize"]},
                                     "space": {"joint.widths": {"grid": [[12, 10], [8, 6]]}}})
    metrics = {"val_accuracy": 0.9, "test_accuracy": 0.88, "dsp": 10.0, "bram18": 0.0, "lut": 5.0,
               "latency_cycles": 3, "met_budget": True}
    trials = [TrialOutcome("t0", "completed", {"joint.widths": [12, 10]}, metrics),
              TrialOutcome("t1", "failed", {"joint.widths": [8, 6]}, {}, error="no layer can be pruned")]
    print_sweep_summary(summarize(config, trials, tmp_path))
    out = capsys.readouterr().out
    assert "[12, 10]" in out and "[8, 6]" in out  # not swallowed as rich markup
    assert "best ★" in out and "90.00%" in out and "failed" in out
