"""DDP fine-tuning: the sampler's global order, the process-group helpers, and real 2-process gloo runs
(launched with torchrun) that must equal a single-process run with the same global batch and seed."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from tenfold.cli import main as cli_main
from tenfold.errors import ConfigError
from tenfold.prune import MaskedFinetune
from tenfold.train import Callback, TrainConfig, fit, load_checkpoint
from tenfold.train.checkpoint import load_training_state
from tenfold.train.distributed import (
    GlobalOrderShardSampler,
    distributed_session,
    is_initialized,
    is_main_process,
    launch_env,
    per_rank_batch_size,
)

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
RTOL, ATOL = 1e-5, 1e-6


def _load_worker():
    spec = importlib.util.spec_from_file_location("tenfold_ddp_worker", HERE / "ddp_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


worker = _load_worker()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """Launch `torch.distributed.run` (torchrun) with a free port; fail the test with its output if it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
               "--master-addr=127.0.0.1", f"--master-port={free_port()}", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def assert_close_states(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=RTOL, atol=ATOL, msg=f"{key} differs")


# ---------------------------------------------------------------------------------------------- pure helpers


def test_per_rank_batch_splits_the_global_batch_or_says_how_to_fix_it():
    assert per_rank_batch_size(256, 2) == 128
    assert per_rank_batch_size(7, 1) == 7
    with pytest.raises(ConfigError, match=r"batch_size 65 is the global batch.*2 processes.*e\.g\. 64"):
        per_rank_batch_size(65, 2)


@pytest.mark.parametrize(("n", "world", "batch"), [(451, 2, 64), (448, 2, 64), (449, 2, 64), (130, 3, 66),
                                                    (133, 3, 66), (5, 2, 64)])
def test_ranks_share_each_global_batch_of_the_single_process_order(n, world, batch):
    """Step s of every rank together holds exactly step s of a plain shuffled DataLoader, for two epochs."""
    plain_generator = torch.Generator().manual_seed(11)
    plain = DataLoader(torch.arange(n), batch_size=batch, shuffle=True, generator=plain_generator)
    plain_steps = [sorted(b.tolist()) for _ in range(2) for b in plain]

    generators = [torch.Generator().manual_seed(11) for _ in range(world)]
    samplers = [GlobalOrderShardSampler(n, batch, rank, world, generators[rank]) for rank in range(world)]
    loaders = [DataLoader(torch.arange(n), batch_size=batch // world, sampler=samplers[rank],
                          generator=generators[rank]) for rank in range(world)]
    per_rank = [[b.tolist() for _ in range(2) for b in loader] for loader in loaders]

    assert len({len(steps) for steps in per_rank}) == 1, "ranks must take the same number of steps"
    tail = n % batch
    dropped = 0 < tail < world  # a last batch too small to give every rank a sample is skipped
    expected = [s for i, s in enumerate(plain_steps) if not (dropped and i % len(plain) == len(plain) - 1)]
    union = [sorted(index for steps in per_rank for index in steps[i]) for i in range(len(per_rank[0]))]
    assert union == expected
    for step, indices in enumerate(union[: len(union) // 2]):  # the sampler knows each global step's size
        assert samplers[0].global_step_size(step) == len(indices)
    for generator in generators:  # the shared generator ends where a single process's does (resume relies on it)
        assert torch.equal(generator.get_state(), plain_generator.get_state())


def test_sampler_refuses_fewer_samples_than_processes():
    with pytest.raises(ConfigError, match="fewer than the 4 processes"):
        GlobalOrderShardSampler(3, 64, 0, 4, torch.Generator())


def test_launch_env_reads_torchrun_variables(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch_env() is None
    assert is_main_process()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = launch_env()
    assert (env.rank, env.world_size, env.local_rank) == (3, 4, 1)
    assert not is_main_process()
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ConfigError, match="must be integers"):
        launch_env()


def test_distributed_fit_without_torchrun_is_a_clear_error(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with distributed_session() as up:  # not launched by torchrun: a plain single-process block
        assert not up and not is_initialized()
    with pytest.raises(ConfigError, match="torchrun"):
        fit(worker.mlp(), worker.dataset(64, 0), None, TrainConfig(epochs=1, distributed=True), progress=False)
    with pytest.raises(ConfigError, match="distributed must be"):
        TrainConfig(distributed="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- a one-process group, in process


@pytest.fixture
def one_process_torchrun_env(monkeypatch):
    """The environment torchrun gives a single worker, so `distributed=True` can start a real gloo group."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    yield
    if is_initialized():  # never leak a process group into other tests
        dist.destroy_process_group()


def test_ddp_path_with_one_process_equals_plain_fit(one_process_torchrun_env, tmp_path):
    train, val = worker.dataset(worker.N_TRAIN, 0), worker.dataset(150, 1)
    reference = worker.masked_mlp()
    expected = fit(reference, train, val, worker.masked_config(), callbacks=[MaskedFinetune(reference)],
                   progress=False)
    model = worker.masked_mlp()
    config = TrainConfig(**(worker.masked_config().to_dict() | {"distributed": True}))
    report = fit(model, train, val, config, callbacks=[MaskedFinetune(model)], progress=False,
                 checkpoint_path=tmp_path / "run.state")
    assert not is_initialized(), "a group fit started must be ended by fit"
    assert_close_states(model.state_dict(), reference.state_dict())
    assert [r.val_accuracy for r in report.history] == [r.val_accuracy for r in expected.history]
    saved = load_training_state(tmp_path / "run.state")
    assert saved["epoch"] == 1 and "0.weight_mask" in saved["model"]


def test_ddp_run_resumes_to_the_same_weights(one_process_torchrun_env, tmp_path):
    """Rank 0 reads the state file and broadcasts it; the resumed run ends where an uninterrupted one does."""
    train, val = worker.dataset(worker.N_TRAIN, 0), worker.dataset(150, 1)
    config = TrainConfig(**(worker.plain_config().to_dict() | {"epochs": 3, "distributed": True}))
    reference = worker.mlp()
    fit(reference, train, val, TrainConfig(**(config.to_dict() | {"distributed": None})), progress=False)

    class InterruptInEpochTwo(Callback):
        def on_epoch_end(self, state, record):
            if record.epoch == 1:
                raise KeyboardInterrupt

    state_file = tmp_path / "run.state"
    report = fit(worker.mlp(), train, val, config, callbacks=[InterruptInEpochTwo()], progress=False,
                 checkpoint_path=state_file)
    assert report.interrupted and state_file.exists()
    resumed = worker.mlp()
    with torch.no_grad():
        for parameter in resumed.parameters():
            parameter.fill_(0.5)  # everything must come from the state file
    report = fit(resumed, train, val, config, progress=False, checkpoint_path=state_file, resume=True)
    assert not report.interrupted and len(report.history) == 3
    assert_close_states(resumed.state_dict(), reference.state_dict())


def test_ddp_needs_a_dataset_not_a_loader(one_process_torchrun_env):
    loader = DataLoader(worker.dataset(64, 0), batch_size=16)
    with pytest.raises(ConfigError, match="not a DataLoader"):
        fit(worker.mlp(), loader, None, TrainConfig(epochs=1, distributed=True), progress=False)
    assert not is_initialized()


# ------------------------------------------------------------------------------ two processes with torchrun


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun([str(HERE / "ddp_worker.py"), str(out)], cwd=out)
    (out / "launch.log").write_text(done.stdout)
    return out, [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def test_two_processes_equal_one_process_with_the_same_global_batch(two_rank_results):
    _, ranks = two_rank_results
    assert [r["world_size"] for r in ranks] == [2, 2]
    train, val = worker.dataset(worker.N_TRAIN, 0), worker.dataset(150, 1)
    reference = worker.mlp()
    report = fit(reference, train, val, worker.plain_config(), progress=False)
    for key in ranks[0]["plain"]:  # identical on both ranks, although they started from different weights
        assert torch.equal(ranks[0]["plain"][key], ranks[1]["plain"][key]), key
    assert_close_states(ranks[0]["plain"], reference.state_dict())
    for ours, theirs in zip(ranks[0]["plain_history"], report.history, strict=True):
        assert ours[1] == pytest.approx(theirs.train_accuracy, abs=1e-12)  # same samples seen, so same counts
        assert ours[3] == pytest.approx(theirs.val_accuracy, abs=1e-12)
        assert ours[0] == pytest.approx(theirs.train_loss, rel=1e-5)
        assert ours[2] == pytest.approx(theirs.val_loss, rel=1e-5)
    assert ranks[0]["plain_history"] == ranks[1]["plain_history"]  # metrics are reduced over ranks


def test_masked_finetuning_under_ddp_keeps_masks_and_zeros(two_rank_results):
    _, ranks = two_rank_results
    for rank in ranks:
        for name in ("0", "2"):
            mask = rank["masks_after"][name]
            assert torch.equal(mask, rank["masks_before"][name])
            assert torch.equal(mask, ranks[0]["masks_after"][name])
            weight = rank["masked"][f"{name}.weight_orig"]
            assert torch.count_nonzero(weight[mask == 0]) == 0
            assert torch.count_nonzero(weight[mask == 1]) == int(mask.sum())
    for key in ranks[0]["masked"]:
        assert torch.equal(ranks[0]["masked"][key], ranks[1]["masked"][key]), key
    train, val = worker.dataset(worker.N_TRAIN, 0), worker.dataset(150, 1)
    reference = worker.masked_mlp()
    fit(reference, train, val, worker.masked_config(), callbacks=[MaskedFinetune(reference)], progress=False)
    assert_close_states(ranks[0]["masked"], reference.state_dict())


def test_only_rank_zero_writes_the_training_state(two_rank_results):
    out, ranks = two_rank_results
    assert (out / "masked_rank0.state").exists()
    assert not (out / "masked_rank1.state").exists()
    saved = load_training_state(out / "masked_rank0.state")
    assert saved["epoch"] == 1
    assert torch.equal(saved["model"]["0.weight_mask"], ranks[0]["masks_after"]["0"])


def test_errors_and_hooks_under_ddp(two_rank_results):
    _, ranks = two_rank_results
    for rank in ranks:
        assert "batch_size 33 is the global batch" in rank["odd_batch_error"]
        assert rank["lonely_backward_ok"]  # DDP's gradient hooks are gone once fit returns


def test_cli_train_in_a_process_group_equals_a_single_process_run(two_rank_results, tmp_path):
    out, ranks = two_rank_results
    assert [rank["cli_exit"] for rank in ranks] == [0, 0]
    assert out.joinpath("launch.log").read_text().count("done:") == 1  # only rank 0 prints
    assert not (out / "cli.pt.state").exists()
    assert cli_main([*worker.CLI_TRAIN, "--out", str(tmp_path / "single.pt")]) == 0
    ddp, single = load_checkpoint(out / "cli.pt"), load_checkpoint(tmp_path / "single.pt")
    assert_close_states(ddp.state_dict, single.state_dict)
    assert ddp.metadata["test_accuracy"] == pytest.approx(single.metadata["test_accuracy"], abs=1e-12)


@pytest.mark.slow
def test_torchrun_module_entry_point_trains(tmp_path):
    """The real user path, `torchrun --nproc-per-node 2 -m tenfold.cli train ...` (slow: two fresh processes)."""
    done = torchrun(["-m", "tenfold.cli", *worker.CLI_TRAIN, "--out", str(tmp_path / "ddp.pt")], cwd=tmp_path)
    assert done.stdout.count("done:") == 1, done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt"]  # no .state file left behind
    assert load_checkpoint(tmp_path / "ddp.pt").metadata["train_config"]["batch_size"] == 64
