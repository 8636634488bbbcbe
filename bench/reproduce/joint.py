"""Reproduction: the joint pipeline (one multiple-choice knapsack over prune / precision actions per layer)
on the two pruning-paper models, beside knapsack pruning alone under the same budget and tolerance.

Models: LeNet on Fashion-MNIST (Debian's dataset-fashion-mnist) and the jet-tagger MLP architecture
(784-64-32-32-10) on MNIST (the shared 10k training images). ap_fixed<16,6>, Latency strategy, RF 1, budget
'dsp<=0.1x', tolerance 1% absolute validation accuracy; every run is a `tenfold run` recipe.

With the shared CIFAR-10 data, pretrained ResNet-20 too (Resource, io_stream, RF 144, 'dsp<=0.3x,lut<=1.0x',
2% tolerance; the joint knapsack may also decompose layers into 8-bit CP factors).

Run: .venv/bin/python bench/reproduce/joint.py [--quick] [--cases ResNet]  → bench/results/reproduce_joint.{json,md}
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import markdown_table, shared_data, write_results
from tenfold.pipeline.config import run_config_from_dict
from tenfold.pipeline.run import run

FASHION = Path(os.environ.get("TENFOLD_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
HEADERS = ["model / data", "recipe", "budget met", "DSP", "DSP saved", "LUT saved", "val before → after",
           "test before → after", "time"]


def recipes(quick: bool, recovery_epochs: int = 0) -> list[tuple[str, dict]]:
    cases = [("jet-MLP arch / MNIST", {"model": {"name": "jet_mlp"},
                                       "data": {"name": "mnist", "path": str(shared_data("mnist")),
                                                "options": {"flatten": True}},
                                       "train": {"epochs": 3 if quick else 20, "lr": 2e-3}})]
    if FASHION.exists():
        cases.append(("LeNet / Fashion-MNIST", {"model": {"name": "lenet"},
                                                "data": {"name": "fashion-mnist", "path": str(FASHION),
                                                         **({"max_train": 5000} if quick else {})},
                                                "train": {"epochs": 2 if quick else 8, "lr": 2e-3}}))
    out = []
    for label, case in cases:
        common = case | {"hardware": {"precision": "fixed<16,6>", "strategy": "Latency", "reuse_factor": 1},
                         "budget": "dsp<=0.1x", "tolerance": 0.01, "seed": 0,
                         "finetune": {"epochs": 1 if quick else 2, "lr": 1e-3},
                         "export": {"hls4ml": False}}
        # the same number of fine-tuned steps for both: 6 pruning steps / 6 joint rounds, each with 2 bisection
        # retries after a rejection
        # a step or round that misses the tolerance gets `recovery_epochs` more fine-tuning in both recipes
        out.append((label, common | {"methods": ["prune"], "prune": {"steps": 2 if quick else 6,
                                                                     "recovery_epochs": recovery_epochs}}))
        out.append((label, common | {"strategy": "joint", "methods": ["prune", "quantize"],
                                     "joint": {"prune_levels": [0.2, 0.4, 0.6, 0.8, 0.9], "widths": [12, 10, 8],
                                               "rounds": 2 if quick else 6, "retries": 2,
                                               "recovery_epochs": recovery_epochs}}))
    cifar, weights = _optional_data("cifar10-jpeg"), _optional_data("cifar10-resnet")
    if cifar is not None and weights is not None and (weights / "resnet20-12fca82f.th").exists():
        out += resnet_recipes(cifar, weights / "resnet20-12fca82f.th", quick, recovery_epochs)
    else:
        print("skipping ResNet-20 / CIFAR-10: the shared cifar10-jpeg data or the pretrained weights are missing")
    return out


def _optional_data(relative: str) -> Path | None:
    try:
        return shared_data(relative)
    except SystemExit:
        return None


def resnet_recipes(cifar: Path, weights: Path, quick: bool, recovery_epochs: int) -> list[tuple[str, dict]]:
    """Pretrained ResNet-20 streamed through hls4ml (io_stream, Resource, RF 144): the joint knapsack may also
    decompose a layer (8-bit CP3 factors, weights regenerated on chip); LUTs are budgeted too, so narrower
    weights (LUT multipliers instead of DSPs) are not free. 10,000 training images, one epoch per round/step."""
    label = "ResNet-20 / CIFAR-10"
    common = {"model": {"name": "resnet20", "pretrained": str(weights)},
              "data": {"name": "cifar10", "path": str(cifar), "max_train": 2000 if quick else 10_000,
                       **({"max_test": 1000} if quick else {})},
              "hardware": {"precision": "fixed<16,6>", "strategy": "Resource", "io_type": "io_stream",
                           "reuse_factor": 144},
              "budget": "dsp<=0.3x,lut<=1.0x", "tolerance": 0.02, "seed": 0,
              "finetune": {"epochs": 0 if quick else 1, "lr": 1e-3, "augment": "flip_crop", "distill_alpha": 0.5},
              "export": {"hls4ml": False}}
    rounds = 1 if quick else 3
    return [
        (label, common | {"methods": ["prune"], "prune": {"steps": rounds, "retries": 1,
                                                          "recovery_epochs": recovery_epochs}}),
        (label, common | {"strategy": "joint", "methods": ["prune", "decompose", "quantize"],
                          "decompose": {"bits": 8},
                          "joint": {"prune_levels": [0.3, 0.6], "ranks": [0.25, 0.1], "widths": [10, 8],
                                    "rounds": rounds, "retries": 1, "sensitivity_batches": 4,
                                    "recovery_epochs": recovery_epochs}}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few epochs and steps (a smoke run)")
    parser.add_argument("--cases", nargs="*", default=None, help="substrings of the case names to run")
    parser.add_argument("--recipes", nargs="*", default=None, choices=["prune", "joint"], help="which recipes")
    parser.add_argument("--recovery-epochs", type=int, default=2,
                        help="extra fine-tuning for a pruning step or joint round that misses the tolerance")
    parser.add_argument("--name", default="reproduce_joint", help="results file name under bench/results")
    args = parser.parse_args()
    records, rows = [], []
    with tempfile.TemporaryDirectory(prefix="tenfold-reproduce-") as scratch:
        for index, (label, recipe) in enumerate(recipes(args.quick, args.recovery_epochs)):
            kind = "joint" if recipe.get("strategy") == "joint" else "prune"
            if (args.cases and not any(part in label for part in args.cases)) or (
                    args.recipes and kind not in args.recipes):
                continue
            result = run(run_config_from_dict(recipe), Path(scratch) / str(index), progress=False)
            report = result.report
            name = "knapsack pruning only"
            if recipe.get("strategy") == "joint":
                name = "joint (" + " × ".join({"prune": "prune", "quantize": "precision", "decompose": "CP rank"}[m]
                                              for m in recipe["methods"]) + ")"
            reduction = report.reduction()
            record = {"case": label, "recipe": name, "config": recipe, "report": report.to_dict()}
            records.append(record)
            base, final = report.baseline, report.final
            rows.append([label, name, "yes" if report.met_budget else "no",
                         f"{base.totals['dsp']:,.0f} → {final.totals['dsp']:,.0f}", f"{100 * reduction['dsp']:.1f}%",
                         f"{100 * reduction['lut']:.1f}%",
                         f"{100 * base.val_accuracy:.2f}% → {100 * final.val_accuracy:.2f}%",
                         f"{100 * base.test_accuracy:.2f}% → {100 * final.test_accuracy:.2f}%",
                         f"{report.seconds:.0f}s"])
            print(rows[-1], flush=True)
            write_results(args.name, {"args": vars(args), "quick": args.quick, "records": records},
                          "# Joint pipeline vs pruning alone\n\n" + (__doc__ or "").split("\n\n")[1] + "\n\n"
                          + markdown_table(HEADERS, rows))
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
