"""DDP step time with 1 and 2 processes: `fit` under torchrun (gloo, CPU) against a plain single-process `fit`.

Models: LeNet on Fashion-MNIST-shaped synthetic data (1×28×28, 10 classes) and the hls4ml jet-tagger MLP
(16-64-32-32-5) on synthetic jet features; global batch 256, Adam, 3 epochs of 20 steps, no validation.
A step is forward, backward (with DDP's gradient all-reduce), optimiser step and data loading: the time
between consecutive `on_step_end` calls of rank 0, first epoch dropped as warm-up; the table gives the median.
Each configuration runs REPEATS times in fresh processes; the best run is reported (the machine is shared,
so slower runs mostly measure other people's jobs); all runs are in the JSON.

Threads: one torch thread per process (`torch.set_num_threads(1)`, OMP_NUM_THREADS=1, what torchrun also
picks), so 2 processes use the machine's 2 cores; the speed-up column is against a plain single-process
`fit` on one thread. A plain `fit` on 2 threads (the other way to use both cores) is the last row; on this
shared, oversubscribed machine two OpenMP threads per process were slower than one in every trial.

Run: .venv/bin/python bench/ddp_scaling.py  → bench/results/ddp_scaling.{json,md}
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GLOBAL_BATCH = 256
STEPS_PER_EPOCH = 20
EPOCHS = 3
REPEATS = 3
MODELS = ("lenet", "jet_mlp")
# (label, processes, threads per process, launched by torchrun)
CONFIGS = [
    ("plain fit", 1, 1, False),
    ("DDP", 1, 1, True),
    ("DDP", 2, 1, True),
    ("plain fit", 1, 2, False),
]


def worker(model_name: str, threads: int, out_path: Path) -> None:
    """One training run; rank 0 writes its step times to `out_path`."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    from torch.utils.data import TensorDataset

    from tenfold.models import create
    from tenfold.train import Callback, TrainConfig, fit
    from tenfold.train.distributed import distributed_session, get_world_size, is_main_process

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    n = GLOBAL_BATCH * STEPS_PER_EPOCH
    if model_name == "lenet":
        data = TensorDataset(torch.randn(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,)))
        model = create("lenet", in_channels=1, image_size=28, num_classes=10)
    else:
        data = TensorDataset(torch.randn(n, 16, generator=generator), torch.randint(0, 5, (n,)))
        model = create("jet_mlp", in_features=16, num_classes=5)
    stamps: list[list[float]] = []

    class StepTimer(Callback):
        def on_epoch_begin(self, state):
            stamps.append([time.perf_counter()])

        def on_step_end(self, state):
            stamps[-1].append(time.perf_counter())

    with distributed_session() as distributed:
        config = TrainConfig(epochs=EPOCHS, batch_size=GLOBAL_BATCH, schedule="constant", seed=0)
        fit(model, data, None, config, callbacks=[StepTimer()], progress=False)
        if is_main_process():
            steps = [b - a for epoch in stamps[1:] for a, b in itertools.pairwise(epoch)]
            out_path.write_text(json.dumps({
                "model": model_name, "processes": get_world_size(), "threads": threads, "ddp": distributed,
                "step_seconds": steps,
            }))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(model_name: str, processes: int, threads: int, ddp: bool, out_path: Path) -> dict:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": str(threads)}
    script = [str(Path(__file__).resolve()), "--worker", model_name, str(threads), str(out_path)]
    if ddp:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   "--master-addr=127.0.0.1", f"--master-port={free_port()}", *script]
    else:
        command = [sys.executable, *script]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=900)
    return json.loads(out_path.read_text())


def main() -> None:
    from _common import markdown_table, write_results

    runs: list[dict] = []
    rows = []
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="ddp_scaling_"))
    for model_name in MODELS:
        baseline_ms = None
        for label, processes, threads, ddp in CONFIGS:
            medians = []
            for repeat in range(REPEATS):
                result = launch(model_name, processes, threads, ddp, scratch / "run.json")
                result["median_ms"] = 1000 * statistics.median(result["step_seconds"])
                result |= {"label": label, "repeat": repeat}
                runs.append(result)
                medians.append(result["median_ms"])
                print(f"{model_name:8s} {label:9s} {processes}×{threads}: {result['median_ms']:.2f} ms/step",
                      file=sys.stderr)
            best = min(medians)
            if baseline_ms is None:  # the first configuration, plain fit on one thread
                baseline_ms = best
            rows.append([model_name, label, processes, threads, GLOBAL_BATCH // processes, f"{best:.2f}",
                         f"{1000 * GLOBAL_BATCH / best:,.0f}", f"{baseline_ms / best:.2f}×",
                         " / ".join(f"{m:.2f}" for m in medians)])
    (scratch / "run.json").unlink(missing_ok=True)
    scratch.rmdir()
    headers = ["model", "run", "processes", "threads/process", "batch/process", "ms/step (best)", "samples/s",
               "vs plain fit, 1 thread", "ms/step per repeat"]
    table = markdown_table(headers, rows)
    load_after = os.getloadavg()
    note = (f"\nGlobal batch {GLOBAL_BATCH}, Adam, CPU, gloo; median step time of epochs 2–{EPOCHS} "
            f"({STEPS_PER_EPOCH} steps each), best of {REPEATS} runs. 1-minute load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared machine).\n")
    print(table + note)
    write_results("ddp_scaling", {
        "global_batch": GLOBAL_BATCH, "epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH, "repeats": REPEATS,
        "load_average_before": load_before, "load_average_after": load_after, "runs": runs,
        "table": [dict(zip(headers, row, strict=True)) for row in rows],
    }, "# DDP step time, 1 vs 2 processes\n\n" + table + note)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        index = sys.argv.index("--worker")
        worker(sys.argv[index + 1], int(sys.argv[index + 2]), Path(sys.argv[index + 3]))
    else:
        main()
