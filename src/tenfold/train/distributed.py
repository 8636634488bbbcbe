"""Multi-process training with torch DistributedDataParallel: one process per core or GPU, launched by torchrun.

`fit` switches to DDP by itself when a process group is initialised; this module holds what that needs:
reading the torchrun environment, starting and ending the process group, rank-0-only decisions, state
broadcasts, metric reductions, and a sampler that splits one global shuffled order across ranks so a run on
N processes sees, step by step, exactly the samples a single-process run with the same global batch sees.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import RandomSampler, Sampler

from tenfold.errors import ConfigError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def launch_env() -> LaunchEnv | None:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or None when not launched by torchrun."""
    if not all(key in os.environ for key in ENV_KEYS):
        return None
    try:
        values = [int(os.environ[key]) for key in ENV_KEYS]
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); "
            f"got {', '.join(f'{k}={os.environ[k]!r}' for k in ENV_KEYS)}"
        ) from None
    return LaunchEnv(*values)


def is_initialized() -> bool:
    """True when a torch.distributed process group is up in this process."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank: from the process group, else from torchrun's RANK, else 0."""
    if is_initialized():
        return dist.get_rank()
    env = launch_env()
    return env.rank if env else 0


def get_world_size() -> int:
    """Number of processes in the process group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 — the one process that writes files and shows progress."""
    return get_rank() == 0


def default_backend() -> str:
    """nccl when CUDA is available, gloo on CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None) -> bool:
    """Start the process group from the torchrun environment; False if it was already up.

    Raises a ConfigError when the process was not started by torchrun, since there is nobody to talk to.
    """
    if is_initialized():
        return False
    env = launch_env()
    if env is None:
        raise ConfigError(
            "distributed training needs the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK) but it is unset; "
            "launch with `torchrun --nproc-per-node N ...` or train in a single process"
        )
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    return True


def destroy_distributed() -> None:
    """End the process group if one is up (safe to call more than once)."""
    if is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(backend: str | None = None, *, required: bool = False) -> Iterator[bool]:
    """Run the block inside a process group when launched by torchrun, and in a single process otherwise.

    Yields whether a process group is up. A group this block started is destroyed when it ends; one that
    was already up is left alone. With `required=True` a missing torchrun environment is an error.
    """
    started = False
    if launch_env() is not None or required:
        started = init_distributed(backend)
    try:
        yield is_initialized()
    finally:
        if started:
            destroy_distributed()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_initialized():
        dist.barrier()


@torch.no_grad()
def broadcast_module_state(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer (pruning masks included) with rank `src`'s values, in place."""
    if not is_initialized():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s picklable `obj` on every rank (the object itself without a process group)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum of `values` over all ranks, in float64 (the values themselves without a group)."""
    if not is_initialized():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank, so ranks agree on stopping."""
    return all_reduce_sum([1.0 if flag else 0.0])[0] > 0


def per_rank_batch_size(global_batch: int, world_size: int) -> int:
    """The batch each rank trains on; the global batch must split evenly so every step averages right."""
    if global_batch % world_size:
        raise ConfigError(
            f"batch_size {global_batch} is the global batch and must be divisible by the {world_size} processes; "
            f"use a multiple of {world_size} (e.g. {max(world_size, global_batch - global_batch % world_size)})"
        )
    return global_batch // world_size


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """`model` wrapped in DDP for the current process group (CUDA models get their device id)."""
    if device.type != "cuda":
        return nn.parallel.DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return nn.parallel.DistributedDataParallel(model, device_ids=[index])


class GlobalOrderShardSampler(Sampler[int]):
    """One rank's share of the shuffled order a single-process run would use, split batch by batch.

    The order comes from `RandomSampler(generator=...)` drawn exactly as a plain DataLoader with
    `shuffle=True` draws it, so the shared generator advances identically. Rank r takes positions
    r, r+W, r+2W, … of that order; with a per-rank batch of B/W, global step s then covers positions
    [s·B, (s+1)·B) — the same samples as step s of the single-process run. If the last global batch would
    leave some rank empty (1 ≤ n mod B < W) those few samples are skipped, so every rank takes the same
    number of steps (DDP needs that).
    """

    def __init__(self, n_samples: int, global_batch: int, rank: int, world_size: int,
                 generator: torch.Generator) -> None:
        self.order = RandomSampler(range(n_samples), generator=generator)
        self.global_batch = global_batch
        self.rank = rank
        self.world_size = world_size
        tail = n_samples % global_batch
        self.n_used = n_samples - tail if 0 < tail < world_size else n_samples
        if self.n_used < world_size:
            raise ConfigError(
                f"the training set has {n_samples} samples, fewer than the {world_size} processes; "
                "use more data or fewer processes"
            )

    def __iter__(self) -> Iterator[int]:
        # read the whole order even past n_used, so the generator ends the epoch where a single process's does
        for position, index in enumerate(self.order):
            if position < self.n_used and position % self.world_size == self.rank:
                yield index

    def __len__(self) -> int:
        return len(range(self.rank, self.n_used, self.world_size))

    def global_step_size(self, step: int) -> int:
        """How many samples global step `step` of an epoch covers, over all ranks."""
        return max(0, min(self.global_batch, self.n_used - step * self.global_batch))


def strided_indices(n_samples: int) -> range:
    """This rank's evaluation share: indices rank, rank+W, … (uneven shares are fine for evaluation)."""
    return range(get_rank(), n_samples, get_world_size())
