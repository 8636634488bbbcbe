"""One tenfold pruning run with its step log: the quick experiment behind the pruning benchmark's tuning notes.

Same models, data and HLS settings as `bench/prune_benchmark.py`, but tenfold only (no baselines) and every
pruner option on the command line (regularisation, retries, budget), so one setting costs one run. Prints the
step table and writes bench/results/<name>.{json,md}.

Run: .venv/bin/python bench/prune_run.py --case jet-MLP --mode Resource --epochs 13 --recovery-epochs 14 --reg 5e-5
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import markdown_table, write_results
from prune_benchmark import cases, hls_modes
from tenfold.errors import TenfoldError
from tenfold.hardware import estimate, make_config
from tenfold.hardware.estimate import uniform_reuse_config
from tenfold.models import create, kwargs_for_data
from tenfold.prune import PruneConfig, Pruner
from tenfold.prune.importance import NORMALISATIONS
from tenfold.train import TrainConfig, evaluate, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", default="jet-MLP", help="substring of a benchmark case (jet-MLP, Fashion)")
    parser.add_argument("--mode", default="Latency", help="substring of an HLS mode (Resource, Latency)")
    parser.add_argument("--budget", default=None, help="default: the benchmark's tenfold budget for the mode")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"),
                        help="fine-tuning optimiser (sgd: momentum 0.9, Nesterov)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--distill", type=float, default=0.5)
    parser.add_argument("--tolerance", type=float, default=0.008)
    parser.add_argument("--reg", type=float, default=0.0, help="group-lasso strength on the pruning structures")
    parser.add_argument("--recovery-epochs", type=int, default=0)
    parser.add_argument("--final-epochs", type=int, default=0,
                        help="fine-tuning epochs on the final masks after the last step")
    parser.add_argument("--reuse", type=int, default=8,
                        help="reuse factor for the Resource strategy (default: the benchmark's 8); a smaller one "
                             "makes each DSP pattern fewer weights")
    parser.add_argument("--restore-best", action="store_true",
                        help="end each step's fine-tuning on its best validation epoch (optimistic: the same "
                             "validation set judges the step) instead of its last one")
    parser.add_argument("--importance", default="taylor", choices=("taylor", "fisher", "l1", "l2"))
    parser.add_argument("--normalize", default="auto", choices=NORMALISATIONS,
                        help="how structure values from different layers are put on one scale (auto: none for "
                             "taylor/fisher, layer_max for l1/l2)")
    parser.add_argument("--importance-batches", type=int, default=8,
                        help="training minibatches the importance is accumulated over at every step")
    parser.add_argument("--permute", action="store_true",
                        help="reorder hidden channels before pruning so multiplier patterns hold like weights")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the pruning run (importance batches, fine-tuning); the start model is seed 0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="prune_run", help="results file name under bench/results")
    args = parser.parse_args()
    if args.reuse < 2:
        parser.error("--reuse is the Resource strategy's reuse factor and must be >= 2")
    torch.set_num_threads(args.threads)
    case = next((c for c in cases(False, 0.2) if args.case in c[0]), None)
    mode = next((m for m in hls_modes(reuse=args.reuse) if args.mode in m[0]), None)
    if case is None or mode is None:
        parser.error(f"--case must match one of {[c[0] for c in cases(False, 0.2)]} and --mode one of "
                     f"{[m[0] for m in hls_modes(reuse=args.reuse)]}")
    try:
        run(args, case, mode)
    except TenfoldError as error:  # a bad --budget, missing data, ...: say what is wrong, not where
        parser.error(str(error))


def run(args: argparse.Namespace, case, mode) -> None:
    case_name, model_name, loader, train_config = case
    mode_name, options, default_budget, _ = mode
    splits = loader()
    torch.manual_seed(0)
    model = create(model_name, **kwargs_for_data(model_name, splits.input_shape, splits.num_classes))
    fit(model, splits.train, splits.val, train_config, progress=False)
    hls = uniform_reuse_config(make_config(precision="fixed<16,6>", **options), model, splits.input_shape)
    config = PruneConfig(budget=args.budget or default_budget, structure="pattern", steps=args.steps,
                         retries=args.retries, tolerance=args.tolerance, regularization=args.reg, seed=args.seed,
                         importance=args.importance, normalize=args.normalize,
                         importance_batches=args.importance_batches, permute=args.permute,
                         final_epochs=args.final_epochs,
                         recovery_epochs=args.recovery_epochs,
                         finetune=TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed, optimizer=args.optimizer,
                                              distill_alpha=args.distill, restore_best=args.restore_best))
    started = time.perf_counter()
    result = Pruner(config, hls, splits.input_shape).fit(model, splits.train, splits.val, progress=False)
    seconds = time.perf_counter() - started
    base, final = (estimate(m, splits.input_shape, hls).totals for m in (model, result.model))
    test_before, test_after = evaluate(model, splits.test).accuracy, evaluate(result.model, splits.test).accuracy
    steps = [[s.step, f"{s.fraction:.4f}", f"{100 * s.val_accuracy:.2f}%", s.accepted, s.recovered, s.repair,
              f"{s.resources['dsp']:,.0f}", f"{s.resources['lut']:,.0f}"] for s in result.report.steps]
    table = markdown_table(["step", "fraction", "val", "accepted", "recovered", "repair", "DSP", "LUT"], steps)
    summary = {"case": case_name, "hls": mode_name, "budget": config.budget, "met_budget": result.report.met_budget,
               "dsp_reduction": 1 - final["dsp"] / base["dsp"],
               "bram18_reduction": 1 - final["bram18"] / base["bram18"] if base["bram18"] else 0.0,
               "lut": [base["lut"], final["lut"]], "val": [result.report.baseline_accuracy,
                                                           result.report.final_accuracy],
               "test": [test_before, test_after], "seconds": seconds,
               "final_finetune": result.report.final_finetune, "permutation": result.report.permutation}
    line = (f"{case_name}, {mode_name}, budget {config.budget}: DSP −{100 * summary['dsp_reduction']:.1f}%, "
            f"BRAM18 −{100 * summary['bram18_reduction']:.1f}%, LUT {base['lut']:,.0f} → {final['lut']:,.0f}, "
            f"val {100 * summary['val'][0]:.2f} → {100 * summary['val'][1]:.2f}%, test {100 * test_before:.2f} → "
            f"{100 * test_after:.2f}%, budget {'met' if result.report.met_budget else 'not met'}, {seconds:.0f} s")
    final = result.report.final_finetune
    if final:
        line += (f"; final fine-tuning ({final['epochs']} epochs): val {100 * final['val_before']:.2f} → "
                 f"{100 * final['val_after']:.2f}%, " + ("kept" if final["kept"] else f"discarded: {final['reason']}"))
    print(table + "\n\n" + line)
    write_results(args.name, {"args": vars(args), "summary": summary},
                  f"# Pruning run\n\n`{vars(args)}`\n\n{line}\n\n{table}")


if __name__ == "__main__":
    main()
