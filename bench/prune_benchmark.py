"""Resource-aware pruning vs the tools people would otherwise use, on the same models and budgets.

Models: LeNet on Fashion-MNIST (Debian's dataset-fashion-mnist) and the jet-tagger MLP architecture
(16-64-32-32-5 widened to 784 inputs / 10 classes) on MNIST (the shared 10k training images, official test set;
the LHC jet data is not available offline). Precision ap_fixed<16,6>; two HLS settings: Resource strategy at a
reuse factor > 1 (budget on DSP and BRAM18) and Latency strategy at RF 1 (budget on DSP).

Methods, each with the same fine-tuning and the same accuracy tolerance (--tolerance, default 0.8 points on
validation, each step judged on its last fine-tuning epoch):
- tenfold: DSP-pattern / BRAM-aware knapsack, Taylor importance, polynomial schedule, shift-add constants locked;
- dap-like: hls4ml DAP's assumptions — unnormalised L1 pattern magnitude, every pattern costs the same, DSP only;
- unstructured: global magnitude pruning (torch.nn.utils.prune) to tenfold's final sparsity, same schedule.

Run: .venv/bin/python bench/prune_benchmark.py [--quick]  → bench/results/prune_benchmark.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time
from pathlib import Path

import torch
from torch.nn.utils import prune as torch_prune

from _common import markdown_table, shared_data, write_results
from tenfold.data import load_fashion_mnist, load_mnist
from tenfold.hardware import estimate, make_config
from tenfold.hardware.estimate import uniform_reuse_config
from tenfold.models import create, kwargs_for_data
from tenfold.prune import MaskedFinetune, PruneConfig, Pruner, Schedule, sparsity
from tenfold.train import TrainConfig, evaluate, fit
from tenfold.train.augment import frozen_teacher

FASHION = Path(os.environ.get("TENFOLD_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def cases(quick: bool, mnist_val_fraction: float):
    out = []
    mnist = shared_data("mnist")
    out.append(("jet-MLP arch / MNIST", "jet_mlp", lambda: load_mnist(mnist, seed=0, flatten=True,
                                                                       val_fraction=mnist_val_fraction,
                                                                       max_train=2000 if quick else None),
                TrainConfig(epochs=4 if quick else 20, lr=2e-3, seed=0)))
    if FASHION.exists():
        out.append(("LeNet / Fashion-MNIST", "lenet", lambda: load_fashion_mnist(
            FASHION, seed=0, max_train=3000 if quick else None, max_test=2000 if quick else None),
                    TrainConfig(epochs=2 if quick else 8, lr=2e-3, seed=0)))
    else:
        print(f"skipping LeNet / Fashion-MNIST: {FASHION} not found (apt-get install dataset-fashion-mnist)")
    return out


def hls_modes(dsp_share: float = 0.05, latency_lut: float | None = 0.5, reuse: int = 8):
    """(name, HLS options, tenfold's budget, DAP-like budget: DSP only — it cannot target BRAM at 16 bits, nor LUTs).

    Under the Latency strategy a DSP-only budget lets the knapsack keep every weight it can as a shift-add
    constant, which costs LUTs (the jet MLP kept 69% of its weights and grew from 1.5M to 2.5M LUTs), so tenfold's
    Latency budget also caps LUTs unless ``latency_lut`` is None.
    """
    dsp = f"dsp<={dsp_share:g}x"
    latency = dsp if latency_lut is None else f"{dsp},lut<={latency_lut:g}x"
    return [
        (f"Resource RF≈{reuse}", dict(strategy="Resource", reuse_factor=reuse), f"{dsp},bram<=0.15x", dsp),
        ("Latency RF=1", dict(strategy="Latency", reuse_factor=1), latency, dsp),
    ]


def unstructured(model, splits, hls, input_shape, target_sparsity: float, steps: int, finetune: TrainConfig):
    """Iterative global magnitude pruning (what torch.nn.utils.prune gives) to a target sparsity."""
    teacher = frozen_teacher(model) if finetune.distill_alpha > 0 else None
    model = copy.deepcopy(model)
    params = [(m, "weight") for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    schedule = Schedule("polynomial", steps)
    for step in range(steps):
        fraction = schedule.next_fraction()
        schedule.feedback(fraction, True)
        current = sparsity(model)
        goal = target_sparsity * fraction
        amount = max(0.0, (goal - current) / max(1.0 - current, 1e-9))
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=amount)
        fit(model, splits.train, splits.val, dataclasses.replace(finetune, seed=finetune.seed + step),
            callbacks=[MaskedFinetune(model)], progress=False, teacher=teacher)
    cost = estimate(model, input_shape, hls)
    return model, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (a smoke run)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--finetune-samples", type=int, default=54_000,
                        help="training samples each fine-tuning round sees (epochs = this / training-set size, >= 1)")
    parser.add_argument("--lr", type=float, default=3e-3, help="fine-tuning learning rate (cosine schedule)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"),
                        help="fine-tuning optimiser of every method (sgd: momentum 0.9, Nesterov)")
    parser.add_argument("--permute", action="store_true",
                        help="tenfold reorders hidden channels before pruning (PruneConfig.permute); the baselines "
                             "keep the original order")
    parser.add_argument("--distill", type=float, default=0.5,
                        help="distillation weight from the unpruned model during fine-tuning (0 = off)")
    parser.add_argument("--recovery-epochs", type=int, default=0,
                        help="extra fine-tuning epochs for a step that misses the tolerance (every method)")
    parser.add_argument("--tolerance", type=float, default=0.008, help="accepted validation accuracy drop")
    parser.add_argument("--mnist-val-fraction", type=float, default=0.2)
    parser.add_argument("--cases", nargs="*", default=None, help="substrings of the case names to run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--modes", nargs="*", default=None, help="substrings of the HLS modes to run")
    parser.add_argument("--dsp-budget", type=float, default=0.05,
                        help="DSP budget as a share of the baseline (the pruner stops earlier at the tolerance)")
    parser.add_argument("--latency-lut", type=float, default=0.5,
                        help="LUT cap of tenfold's Latency budget, as a share of the baseline (<= 0: no LUT cap)")
    parser.add_argument("--reuse", type=int, default=8,
                        help="Resource strategy's reuse factor (nearest valid per layer); a DSP pattern is this many "
                             "weights")
    parser.add_argument("--retries", type=int, default=2, help="bisection steps after a rejected step (every method)")
    parser.add_argument("--name", default="prune_benchmark", help="results file name under bench/results")
    args = parser.parse_args()
    if args.reuse < 2 or args.retries < 0:
        parser.error("--reuse must be >= 2 (the Resource strategy's reuse factor) and --retries >= 0")
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    records, rows = [], []
    steps = 3 if args.quick else args.steps
    for case_name, model_name, loader, train_config in cases(args.quick, args.mnist_val_fraction):
        if args.cases and not any(part in case_name for part in args.cases):
            continue
        splits = loader()
        epochs = 1 if args.quick else max(1, round(args.finetune_samples / len(splits.train)))
        # every method's steps end on their last epoch: the validation set that judges them does not pick the epoch
        finetune = TrainConfig(epochs=epochs, lr=args.lr, optimizer=args.optimizer, seed=0, distill_alpha=args.distill,
                               restore_best=False)
        torch.manual_seed(0)
        model = create(model_name, **kwargs_for_data(model_name, splits.input_shape, splits.num_classes))
        fit(model, splits.train, splits.val, train_config, progress=False)
        base_val, base_test = evaluate(model, splits.val).accuracy, evaluate(model, splits.test).accuracy
        for mode_name, options, budget, dsp_only_budget in _modes(args):
            if args.modes and not any(part in mode_name for part in args.modes):
                continue
            hls = uniform_reuse_config(make_config(precision="fixed<16,6>", **options), model, splits.input_shape)
            base_cost = estimate(model, splits.input_shape, hls)
            results, step_logs = {}, {}
            for method in ("tenfold", "dap-like"):
                config = PruneConfig(
                    budget=budget if method == "tenfold" else dsp_only_budget,
                    structure="pattern", steps=steps, retries=args.retries, schedule="polynomial",
                    tolerance=args.tolerance,
                    finetune=finetune,
                    importance="taylor" if method == "tenfold" else "l1",
                    normalize="auto" if method == "tenfold" else "none",
                    uniform_costs=method == "dap-like", seed=0, recovery_epochs=args.recovery_epochs,
                    lock_constants=method == "tenfold",  # hls4ml's DAP lets fine-tuning move every weight
                    solver="auto" if method == "tenfold" else "greedy",  # equal costs: DAP's knapsack is a sort
                    permute=args.permute and method == "tenfold",
                )
                start = time.perf_counter()
                result = Pruner(config, hls, splits.input_shape).fit(model, splits.train, splits.val, progress=False)
                results[method] = (result.model, estimate(result.model, splits.input_shape, hls),
                                   time.perf_counter() - start, result.report.met_budget)
                step_logs[method] = [{"fraction": step.fraction, "accepted": step.accepted, "repair": step.repair,
                                      "recovered": step.recovered, "val": step.val_accuracy,
                                      "dsp": step.resources["dsp"],
                                      "bram18": step.resources["bram18"], "sparsity": step.sparsity}
                                     for step in result.report.steps]
            start = time.perf_counter()
            pruned, cost = unstructured(model, splits, hls, splits.input_shape, sparsity(results["tenfold"][0]),
                                        steps, finetune)
            results["unstructured"] = (pruned, cost, time.perf_counter() - start, None)
            for method, (pruned, cost, seconds, met) in results.items():
                val, test = evaluate(pruned, splits.val).accuracy, evaluate(pruned, splits.test).accuracy
                dsp_red = 1 - cost.totals["dsp"] / base_cost.totals["dsp"] if base_cost.totals["dsp"] else 0.0
                bram_red = 1 - cost.totals["bram18"] / base_cost.totals["bram18"] if base_cost.totals["bram18"] else 0.0
                record = {
                    "case": case_name, "hls": mode_name, "method": method, "budget": budget,
                    "baseline_val": base_val, "baseline_test": base_test, "val": val, "test": test,
                    "val_drop": base_val - val, "test_drop": base_test - test,
                    "baseline": base_cost.totals, "pruned": cost.totals, "dsp_reduction": dsp_red,
                    "bram18_reduction": bram_red, "sparsity": sparsity(pruned), "seconds": seconds, "met_budget": met,
                    "finetune": dataclasses.asdict(finetune), "tolerance": args.tolerance,
                    "steps": step_logs.get(method, []),
                }
                records.append(record)
                dsp_text = f"{base_cost.totals['dsp']:,.0f} → {cost.totals['dsp']:,.0f}"
                rows.append([case_name, mode_name, method, f"{100 * base_test:.2f}%", f"{100 * test:.2f}%",
                             f"{100 * (base_val - val):+.2f}", dsp_text,
                             f"{100 * dsp_red:.1f}%",
                             f"{base_cost.totals['bram18']:,.0f} → {cost.totals['bram18']:,.0f}",
                             f"{100 * bram_red:.1f}%",
                             f"{base_cost.totals['lut']:,.0f} → {cost.totals['lut']:,.0f}",
                             f"{100 * sparsity(pruned):.1f}%", f"{seconds:.0f}s"])
                print(rows[-1], flush=True)
            _write(args, steps, records, rows)  # partial results survive an interrupted run
    print(markdown_table(HEADERS, rows))


HEADERS = ["model / data", "HLS", "method", "test acc before", "test acc after", "val drop (pts)", "DSP", "DSP saved",
           "BRAM18", "BRAM18 saved", "LUT", "sparsity", "time"]
NOTE = ("Budgets: Resource 'dsp<={dsp:g}x,bram<=0.15x' (dap-like: 'dsp<={dsp:g}x', it cannot target BRAM at 16 "
        "bits), Latency '{latency}' (dap-like: 'dsp<={dsp:g}x'); "
        "tolerance {tolerance:g}% absolute validation accuracy; the pruner stops at "
        "the last step within tolerance, so a budget may be missed. Unstructured pruning is taken to tenfold's final "
        "sparsity. "
        "Every method: {steps} polynomial steps, each fine-tuned on about {samples:,} samples ({optimizer}, lr {lr:g}, "
        "cosine) with distillation weight {distill:g} from the unpruned model; a step below the tolerance gets "
        "{recovery} more epochs before it is judged; each step is judged on its last epoch (the validation set "
        "that judges it does not also pick the epoch); up to {retries} bisection steps after a rejection; "
        "MNIST validation fraction {val:g}. tenfold keeps the weights "
        "it priced as shift-add constants (Latency) on such codes while fine-tuning (`lock_constants`); the "
        "baselines do not.{permute}")


def _modes(args):
    return hls_modes(args.dsp_budget, args.latency_lut if args.latency_lut > 0 else None, args.reuse)


def _write(args, steps, records, rows) -> None:
    note = NOTE.format(dsp=args.dsp_budget, recovery=args.recovery_epochs, retries=args.retries,
                       latency=_modes(args)[1][2],
                       tolerance=100 * args.tolerance, steps=steps, samples=args.finetune_samples, lr=args.lr,
                       distill=args.distill, val=args.mnist_val_fraction,
                       optimizer={"adam": "Adam", "adamw": "AdamW", "sgd": "SGD, momentum 0.9"}[args.optimizer],
                       permute=" tenfold first reorders hidden channels so each multiplier pattern holds weights of "
                               "like importance (`permute`, same function); the baselines keep the original order."
                       if args.permute else "")
    write_results(args.name, {"args": vars(args), "steps": steps, "records": records},
                  "# Pruning benchmark\n\n" + note + "\n\n" + markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
