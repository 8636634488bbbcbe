"""Quantized CP decomposition of pretrained CIFAR-10 ResNets: accuracy before, after, and after fine-tuning.

For each model and each target (5x, 10x, 15x fewer conv parameters, 8-bit factors): measure every conv layer's
loss increase at a ladder of ranks on a few training batches, pick one rank per layer with the multiple-choice
knapsack (`select_ranks`), replace the layers by reconstructed quantized-CP layers (`decompose_model`), and
fine-tune the factors with straight-through quantization on `train_25k.npz` for a few CPU epochs. A
reconstruction-error-only rank choice (`value="error"`) is reported beside it, before fine-tuning.

Run: .venv/bin/python bench/decompose_cifar.py [--models resnet20 resnet56] [--targets 5 10 15] [--epochs 2]
     → bench/results/decompose_cifar.{json,md}
On a GPU machine, for the paper's models: train them first (`tenfold train vgg16 --data cifar10 --data-path DIR
--epochs 160 --lr 0.05 --out vgg16.pt`), then
     python bench/decompose_cifar.py --models vgg16 --checkpoint vgg16.pt --data DIR --epochs 30
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch

from _common import markdown_table, shared_data, write_results
from tenfold.data import load_cifar10
from tenfold.decompose import (
    SensitivityConfig,
    accounting_method,
    decompose_model,
    rank_sensitivity,
    select_ranks,
    settle_decomposed,
)
from tenfold.models import create
from tenfold.train import TrainConfig, evaluate, fit, load_model
from tenfold.train.augment import frozen_teacher

HEADERS = ["model", "target", "rank choice", "conv params", "ratio", "test pretrained → adapted",
           "after decomposition → {start}",
           "after fine-tuning", "drop (pts)", "fine-tune time"]


def conv_layers(model: torch.nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--targets", nargs="+", type=float, default=[5.0, 10.0, 15.0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--augment", default="flip_crop", choices=["none", "crop", "flip_crop"])
    parser.add_argument("--distill", type=float, default=0.9,
                        help="distillation weight from the adapted baseline (0 = plain cross-entropy)")
    parser.add_argument("--adapt-epochs", type=int, default=None,
                        help="epochs fine-tuning the pretrained model on train_25k first (default: --epochs), so "
                        "that the drop is measured against a baseline that saw the same data")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="decompose_cifar", help="results file name under bench/results")
    parser.add_argument("--bn-batches", type=int, default=20,
                        help="batches to re-measure BatchNorm statistics on after decomposing (0 = off)")
    parser.add_argument("--refine-steps", type=int, default=200,
                        help="data-aware factor refinement steps per layer before fine-tuning (0 = off; then the "
                        "BatchNorm statistics are re-measured instead)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder to keep the adapted model and the sensitivity table in, so reruns skip them")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--method", default="cp3", choices=["cp", "cp3", "tucker2"],
                        help="cp = CP over all four kernel modes; cp3 = kh·kw merged (default)")
    parser.add_argument("--checkpoint", nargs="*", default=[],
                        help="tenfold checkpoints to use instead of the shared pretrained weights (e.g. a VGG-16 "
                        "trained on a GPU with `tenfold train vgg16 --data cifar10 ...`), one per --models entry")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: the shared cifar10-jpeg)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (untested here: this machine has no GPU)")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--batches", type=int, default=4, help="sensitivity batches (256 images each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    adapt_epochs = args.epochs if args.adapt_epochs is None else args.adapt_epochs
    recipe = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=128, seed=0, augment=args.augment,
                         distill_alpha=args.distill)
    data = Path(args.data) if args.data else shared_data("cifar10-jpeg")
    checkpoints = dict(zip(args.models, args.checkpoint, strict=False))
    splits = load_cifar10(data, seed=0, max_train=args.max_train, max_test=args.max_test)
    precision = f"fixed<{args.bits},1>"
    records, rows = [], []
    start = "refined" if args.refine_steps > 0 else "BN recalibrated" if args.bn_batches > 0 else "unchanged"
    headers = [h.format(start=start) for h in HEADERS]
    for name in args.models:
        if name in checkpoints:
            model = load_model(checkpoints[name])
        else:
            model = create(name, pretrained=next(shared_data("cifar10-resnet").glob(f"{name}-*.th")))
        model = model.to(args.device)
        pretrained_test = evaluate(model, splits.test).accuracy
        adapt_seconds = 0.0
        cached = args.cache / f"{name}-adapt{adapt_epochs}-{args.augment}-lr{args.lr:g}.pt" if args.cache else None
        if cached is not None and cached.exists():
            saved = torch.load(cached, map_location=args.device, weights_only=False)
            model.load_state_dict(saved["model"])
            adapt_seconds = saved["seconds"]
        elif adapt_epochs > 0:  # the same data and recipe as the compressed models get, minus distillation
            started = time.perf_counter()
            fit(model, splits.train, splits.val, dataclasses.replace(recipe, epochs=adapt_epochs, distill_alpha=0.0),
                progress=False)
            adapt_seconds = time.perf_counter() - started
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "seconds": adapt_seconds}, cached)
        base = evaluate(model, splits.test).accuracy
        teacher = frozen_teacher(model) if args.distill > 0 else None
        print(f"{name}: pretrained {100 * pretrained_test:.2f}%, adapted ({adapt_epochs} ep) {100 * base:.2f}% "
              f"in {adapt_seconds:.0f}s", flush=True)
        layers = conv_layers(model)
        started = time.perf_counter()
        sensitivity_config = SensitivityConfig(method=accounting_method(args.method), precision=precision,
                                               n_batches=args.batches)
        sensitivity_file = cached.with_suffix(f".{args.method}.b{args.batches}.sens") if cached else None
        if sensitivity_file is not None and sensitivity_file.exists():
            sensitivity, sensitivity_seconds = torch.load(sensitivity_file, weights_only=False)
        else:
            sensitivity = rank_sensitivity(model, splits.train, sensitivity_config, layers=layers)
            sensitivity_seconds = time.perf_counter() - started
            if sensitivity_file is not None:
                torch.save((sensitivity, sensitivity_seconds), sensitivity_file)
        print(f"{name}: test {100 * base:.2f}%, sensitivity of {len(layers)} convs in {sensitivity_seconds:.0f}s",
              flush=True)
        for target in args.targets:
            for value in ("loss", "error"):
                plan = select_ranks(sensitivity, f"{target:g}x", value=value)
                decomposed, _ = decompose_model(model, plan.ranks, method=args.method, precision=precision,
                                                     layers=list(plan.ranks), skip=(), seed=0)
                raw = evaluate(decomposed, splits.test).accuracy
                if value == "loss":  # the rank-choice comparison (value "error") is made on the raw decomposition
                    settle_decomposed(model, decomposed, splits.train, refine_steps=args.refine_steps,
                                      bn_batches=args.bn_batches, seed=0)
                after = evaluate(decomposed, splits.test).accuracy
                tuned, ft_seconds = None, 0.0
                if value == "loss" and args.epochs > 0:
                    started = time.perf_counter()
                    fit(decomposed, splits.train, splits.val, recipe, progress=False, teacher=teacher)
                    ft_seconds = time.perf_counter() - started
                    tuned = evaluate(decomposed, splits.test).accuracy
                final = tuned if tuned is not None else after
                record = {"model": name, "method": args.method, "target": target, "value": value, "ranks": plan.ranks,
                          "conv_params_before": plan.params_before, "conv_params_after": plan.params_after,
                          "ratio": plan.ratio, "test_pretrained": pretrained_test, "adapt_epochs": adapt_epochs,
                          "adapt_seconds": adapt_seconds, "test_before": base, "test_after_decomposition_raw": raw,
                          "test_after_decomposition": after, "bn_batches": args.bn_batches,
                          "refine_steps": args.refine_steps,
                          "test_after_finetune": tuned, "drop": base - final, "finetune_seconds": ft_seconds,
                          "finetune_epochs": args.epochs if tuned is not None else 0,
                          "finetune": dataclasses.asdict(recipe),
                          "sensitivity_seconds": sensitivity_seconds, "bits": args.bits,
                          "predicted_loss_increase": plan.predicted_loss_increase}
                records.append(record)
                rows.append([name, f"{target:g}x", "sensitivity" if value == "loss" else "reconstruction error",
                             f"{plan.params_before:,} → {plan.params_after:,}", f"{plan.ratio:.1f}x",
                             f"{100 * pretrained_test:.2f}% → {100 * base:.2f}%",
                             f"{100 * raw:.2f}% → {100 * after:.2f}%",
                             f"{100 * tuned:.2f}%" if tuned is not None else "—",
                             f"{100 * (base - final):+.2f}", f"{ft_seconds:.0f}s" if tuned is not None else "—"])
                print(rows[-1], flush=True)
                write_results(args.name, {"args": vars(args), "records": records},
                              "# Quantized CP decomposition of pretrained CIFAR-10 ResNets\n\n" + NOTE.format(
                                  method=args.method, bits=args.bits, epochs=args.epochs, train=len(splits.train),
                                  adapt=adapt_epochs, lr=args.lr, start=(
                                      f"each layer's factors are refined for {args.refine_steps} steps to match the "
                                      "original layer's outputs on 4 calibration batches (`refine_factors`)"
                                      if args.refine_steps > 0 else
                                      f"BatchNorm statistics are re-measured on {args.bn_batches} training batches"),
                                  augment=args.augment,
                                  distill=args.distill,
                                  test=len(splits.test))
                              + "\n\n" + markdown_table(headers, rows))
    print(markdown_table(headers, rows))


NOTE = ("Right after decomposing, {start}. "
        "Drop = adapted baseline (the pretrained model fine-tuned on the same JPEG training images with the same "
        "recipe, {adapt} epoch(s)) minus the decomposed model after fine-tuning. "
        "{bits}-bit factors (ap_fixed<{bits},1> codes with a per-factor power-of-two scale), method {method} "
        "(cp: CP over all four kernel modes; cp3: kernel height and width merged into one mode), every conv layer"
        " a candidate (ranks chosen per layer by a multiple-choice knapsack; 'keep' "
        "is a candidate). Test accuracy on {test:,} CIFAR-10 test images; fine-tuning: {epochs} epoch(s) of Adam "
        "(lr {lr:g}, cosine, batch 128) on {train:,} training images (train_25k.npz minus the validation split), "
        "augmentation {augment}, distillation weight {distill:g} from the adapted baseline (T=4), factors trained "
        "through the straight-through quantizer. Ratio = conv parameters before / after (factors + kept layers).")


if __name__ == "__main__":
    main()
