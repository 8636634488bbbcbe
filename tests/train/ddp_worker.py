"""Helper for test_distributed.py, run by torchrun: trains under DDP and saves what each rank ended with.

`python -m torch.distributed.run --nproc-per-node 2 ddp_worker.py OUT_DIR` writes OUT_DIR/rank{R}.pt per rank.
The data, models and configs live here so the test builds the single-process reference from the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from tenfold.cli import main as cli_main
from tenfold.errors import ConfigError
from tenfold.prune import MaskedFinetune, apply_masks, current_masks
from tenfold.train import TrainConfig, fit
from tenfold.train.distributed import distributed_session, get_rank, get_world_size

CLI_TRAIN = ["train", "jet_mlp", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--no-progress"]
GLOBAL_BATCH = 64
N_TRAIN = 451  # 451 = 7·64 + 3: the last global batch splits 2 + 1 over two ranks, so loss re-weighting matters


def dataset(n: int, seed: int) -> TensorDataset:
    """Fixed, seeded 3-class data in 12 dimensions."""
    centres = torch.randn(3, 12, generator=torch.Generator().manual_seed(99)) * 2
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return TensorDataset(centres[labels] + torch.randn(n, 12, generator=generator), labels)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))


def plain_config() -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=GLOBAL_BATCH, lr=1e-2, optimizer="adam", seed=5)


def masked_config() -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=GLOBAL_BATCH, lr=5e-2, optimizer="sgd", seed=6)


def masked_mlp() -> nn.Module:
    """The MLP with half the weights of its first two layers pruned by a fixed random mask."""
    model = mlp()
    generator = torch.Generator().manual_seed(3)
    apply_masks(model, {name: (torch.rand(model.get_submodule(name).weight.shape, generator=generator) > 0.5)
                        .float() for name in ("0", "2")})
    return model


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(out_dir: Path) -> None:
    train, val = dataset(N_TRAIN, 0), dataset(150, 1)
    with distributed_session() as distributed:
        assert distributed, "run this under torchrun"
        rank = get_rank()
        result: dict[str, object] = {"rank": rank, "world_size": get_world_size()}

        model = mlp()
        torch.manual_seed(1000 + rank)  # ranks start from different random states: fit must not depend on them
        with torch.no_grad():
            for parameter in model.parameters():  # and from different weights: rank 0's must win
                parameter.add_(torch.randn_like(parameter) * rank)
        report = fit(model, train, val, plain_config(), progress=False)
        result["plain"] = weights(model)
        result["plain_history"] = [(r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy)
                                   for r in report.history]

        model = masked_mlp()
        masks_before = current_masks(model)
        state_path = out_dir / f"masked_rank{rank}.state"  # one name per rank: only rank 0's may appear
        fit(model, train, val, masked_config(), callbacks=[MaskedFinetune(model)], progress=False,
            checkpoint_path=state_path)
        result["masked"] = weights(model)
        result["masks_before"] = masks_before
        result["masks_after"] = current_masks(model)

        try:
            fit(mlp(), train, None, TrainConfig(epochs=1, batch_size=33), progress=False)
        except ConfigError as exc:
            result["odd_batch_error"] = str(exc)

        # after fit, no DDP hook may linger: a backward on one rank alone must not wait for the other
        if rank == 0:
            model(train.tensors[0][:8]).sum().backward()
        result["lonely_backward_ok"] = True

        # the command line inside the same process group: every rank trains, rank 0 alone writes and prints
        result["cli_exit"] = cli_main([*CLI_TRAIN, "--out", str(out_dir / "cli.pt")])
        torch.save(result, out_dir / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
