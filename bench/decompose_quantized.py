"""Quantized CP-ALS against rounding a float CP-ALS once, at 4, 6 and 8 bits.

Same tensors and ranks as bench/decompose_speed.py: three ResNet-56 conv kernels (rank for ~10x
compression) and random 256x256x3x3 / 512x512x3x3 kernels. Round-after-ALS runs float CP-ALS (svd init,
``sweeps`` sweeps), absorbs λ evenly into the factors and rounds each to the nearest point of
ap_fixed<bits,1> times a power of two (one per factor or per column). Quantized ALS starts from exactly
that point and runs up to ``sweeps`` more, projected, sweeps (error-feedback rounding, best iterate
kept). Because it gets twice the sweeps, round-after-ALS is also run with 2x sweeps ("2x" columns), and
"reduction" is the drop of the error against the better of the two round-after results. Errors are
||W - Ŵ|| / ||W|| of the dequantized decomposition; "float" is the unquantized CP-ALS error.

Run: .venv/bin/python bench/decompose_quantized.py  → bench/results/decompose_quantized.{json,md}
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402

import torch  # noqa: E402

from _common import markdown_table, shared_data, write_results  # noqa: E402
from tenfold.decompose import quantized_cp_als, round_after_als  # noqa: E402
from tenfold.hardware.fixed_point import FixedPoint  # noqa: E402

torch.set_num_threads(1)

LAYERS = [("module.layer1.0.conv1.weight", 6), ("module.layer2.4.conv2.weight", 13),
          ("module.layer3.8.conv2.weight", 27)]
RANDOM = [((256, 256, 3, 3), 114, 20), ((512, 512, 3, 3), 229, 10)]
RESNET_SWEEPS = 100
BITS = (4, 6, 8)
SCALES = ("per_factor", "per_component_pow2")


def cases() -> list[tuple[str, torch.Tensor, int, int]]:
    state = torch.load(shared_data("cifar10-resnet") / "resnet56-4bfd9763.th", map_location="cpu")["state_dict"]
    out = []
    for key, rank in LAYERS:
        weight = state[key].detach().clone()
        name = key.removeprefix("module.").removesuffix(".weight")
        out.append((f"resnet56 {name} {tuple(weight.shape)}", weight, rank, RESNET_SWEEPS))
    gen = torch.Generator().manual_seed(0)
    for shape, rank, sweeps in RANDOM:
        out.append((f"random {shape}", torch.randn(shape, generator=gen), rank, sweeps))
    return out


def main() -> None:
    rows, records = [], []
    for name, tensor, rank, sweeps in cases():
        for scale in SCALES:
            for bits in BITS:
                precision = FixedPoint(bits, 1)
                start = time.perf_counter()
                rounded = round_after_als(tensor, rank, precision, scale=scale, n_iter_max=sweeps, tol=0)
                round_seconds = time.perf_counter() - start
                longer = round_after_als(tensor, rank, precision, scale=scale, n_iter_max=2 * sweeps, tol=0)
                quantized = quantized_cp_als(tensor, rank, precision, scale=scale, n_iter_max=sweeps, tol=0)
                assert rounded.factors_on_grid() and longer.factors_on_grid() and quantized.factors_on_grid()
                best_round = min(rounded.relative_error, longer.relative_error)
                reduction = 1 - quantized.relative_error / best_round
                records.append({"tensor": name, "rank": rank, "sweeps": sweeps, "scale": scale, "bits": bits,
                                "precision": precision.to_cpp(), "float_error": rounded.float_error,
                                "float_error_2x_sweeps": longer.float_error,
                                "round_after_error": rounded.relative_error,
                                "round_after_error_2x_sweeps": longer.relative_error,
                                "quantized_error": quantized.relative_error,
                                "reduction_vs_best_round_after": reduction,
                                "round_after_seconds": round_seconds, "quantized_seconds": quantized.seconds,
                                "quantized_sweeps": quantized.iterations})
                rows.append([name, rank, scale, bits, f"{rounded.float_error:.4f}", f"{longer.float_error:.4f}",
                             f"{rounded.relative_error:.4f}", f"{longer.relative_error:.4f}",
                             f"{quantized.relative_error:.4f}", f"{100 * reduction:.1f} %",
                             f"{round_seconds:.2f}", f"{quantized.seconds:.2f}"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    table = markdown_table(["tensor", "rank", "scale", "bits", "float", "float 2x", "round-after",
                            "round-after 2x", "quantized ALS", "reduction", "round-after s", "quantized s"], rows)
    markdown = "# Quantized CP-ALS vs round-after-ALS\n\n" + __doc__.split("Run:")[0].strip() + "\n\n" + table
    write_results("decompose_quantized", {"cases": records}, markdown)
    print(table)


if __name__ == "__main__":
    main()
