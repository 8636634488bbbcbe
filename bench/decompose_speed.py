"""CP-ALS speed and error: tenfold's cp_als against TensorLy's parafac (numpy backend), same rank and sweeps.

Tensors: three real conv kernels of the pretrained ResNet-56 (rank for ~10x compression) and random
256x256x3x3 (rank 114) and 512x512x3x3 (rank 229) kernels. Both libraries run every sweep (tol=0) from the
same kind of start ("svd" or "random"). Times are the median of 3 calls (1 call for TensorLy when one call
takes over 30 s); errors are ||W - Ŵ|| / ||W|| of what each returns. A second table times the MTTKRP
variants that were considered for cp_als.

Both libraries get the same number of BLAS/OpenMP threads (default 1: on this shared 2-core machine one
thread was faster for both; pass --threads 2 to compare at two).

Run: .venv/bin/python bench/decompose_speed.py [--threads N] [--render-only]  → bench/results/decompose_speed.{json,md}
"""

from __future__ import annotations

import os
import sys

THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)  # before numpy / torch load their BLAS

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import markdown_table, shared_data, write_results  # noqa: E402
from tenfold.decompose import cp_als, khatri_rao, unfold  # noqa: E402
from tenfold.decompose.cp import _contract_except, _Workspace  # noqa: E402

torch.set_num_threads(THREADS)

LAYERS = [("module.layer1.0.conv1.weight", 6), ("module.layer2.4.conv2.weight", 13),
          ("module.layer3.8.conv2.weight", 27)]  # rank ≈ numel / (10 · Σ I_n): ~10x fewer parameters
RANDOM = [((256, 256, 3, 3), 114), ((512, 512, 3, 3), 229)]
RESNET_SWEEPS, RANDOM_SWEEPS = 100, {256: 20, 512: 10}
SLOW_CALL = 30.0


def timed(fn, repeats: int = 3) -> tuple[float, object, int]:
    """Median wall time of ``repeats`` calls (fewer when one call is slow), the last result, calls made."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if times[-1] > SLOW_CALL:
            break
    return statistics.median(times), result, len(times)


def tensorly_run(tensor: torch.Tensor, rank: int, sweeps: int, init: str) -> tuple[float, float, int]:
    import tensorly as tl
    from tensorly.decomposition import parafac

    array = tensor.double().numpy()
    seconds, cp, calls = timed(lambda: parafac(array, rank, n_iter_max=sweeps, init=init, tol=0, random_state=0))
    error = float(np.linalg.norm(array - tl.cp_to_tensor(cp)) / np.linalg.norm(array))
    return seconds, error, calls


def ours_run(tensor: torch.Tensor, rank: int, sweeps: int, init: str, dtype: torch.dtype) -> tuple[float, float]:
    seconds, result, _ = timed(lambda: cp_als(tensor, rank, n_iter_max=sweeps, tol=0, init=init, dtype=dtype))
    return seconds, result.relative_error


def cases() -> list[tuple[str, torch.Tensor, int, int]]:
    state = torch.load(shared_data("cifar10-resnet") / "resnet56-4bfd9763.th", map_location="cpu")["state_dict"]
    out = []
    for key, rank in LAYERS:
        weight = state[key].detach().clone()
        name = key.removeprefix("module.").removesuffix(".weight")
        out.append((f"resnet56 {name} {tuple(weight.shape)}", weight, rank, RESNET_SWEEPS))
    gen = torch.Generator().manual_seed(0)
    for shape, rank in RANDOM:
        out.append((f"random {shape}", torch.randn(shape, generator=gen), rank, RANDOM_SWEEPS[shape[0]]))
    return out


def mttkrp_variants(shape: tuple[int, ...], rank: int) -> dict[str, float]:
    """Milliseconds for the MTTKRPs of one full sweep (all modes), float32, by four methods."""
    gen = torch.Generator().manual_seed(1)
    tensor = torch.randn(shape, generator=gen)
    factors = [torch.randn(s, rank, generator=gen) for s in shape]
    ndim = len(shape)
    workspace = _Workspace(tensor, rank)

    def dimension_tree():
        return [workspace.mttkrp(factors, n) for n in range(ndim)]

    def unfolding_times_full_khatri_rao():  # what TensorLy does, in torch
        return [unfold(tensor, n) @ khatri_rao([f for m, f in enumerate(factors) if m != n]) for n in range(ndim)]

    def mode_by_mode_tensordot():  # contract the largest other mode by a GEMM, then the rest column-wise
        out = []
        for n in range(ndim):
            others = [m for m in range(ndim) if m != n]
            big = max(others, key=lambda m: shape[m])
            partial = torch.tensordot(tensor, factors[big], dims=([big], [0]))  # modes without big, then R
            rest = [m for m in range(ndim) if m != big]
            out.append(_contract_except(partial, [factors[m] for m in rest if m != n], rest.index(n)))
        return out

    def einsum_per_mode():
        letters = "abcd"[:ndim]
        out = []
        for n in range(ndim):
            spec = letters + "," + ",".join(f"{letters[m]}z" for m in range(ndim) if m != n) + f"->{letters[n]}z"
            out.append(torch.einsum(spec, tensor, *[f for m, f in enumerate(factors) if m != n]))
        return out

    reference = unfolding_times_full_khatri_rao()
    results = {}
    for name, fn in [("dimension tree: 2 GEMMs per sweep (cp_als)", dimension_tree),
                     ("unfolding @ full Khatri-Rao, per mode (TensorLy's way)", unfolding_times_full_khatri_rao),
                     ("tensordot largest mode, then column-wise, per mode", mode_by_mode_tensordot),
                     ("torch.einsum per mode", einsum_per_mode)]:
        got = fn()
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3 * float(b.abs().max()))
        seconds, _, _ = timed(fn, repeats=5)
        results[name] = 1000 * seconds
    return results


NOTES = """Where the time goes: TensorLy forms the Khatri-Rao product of the other three factors for every mode
with a three-operand numpy einsum; for the two 3-wide kernel modes that is a (O·I·3) x R matrix (180 M
entries for 512x512x3x3), which dominates its sweep. cp_als does two tensor-sized GEMMs per sweep (see
the MTTKRP table). On the 16- and 32-channel layers both libraries are bound by per-call interpreter and
dispatch overhead (cp_als needs about 40 small torch calls, ~0.35-0.5 ms, per sweep; TensorLy's numpy
calls are cheaper), so the speed-up there is only ~1.3-3x; at 64x64x3x3 it was 14-18x (TensorLy ~10 ms
per sweep, cp_als ~0.6 ms), below the 20x target, and 51-212x on the 256- and 512-channel kernels. The
machine is a shared 2-core VM, so timings vary by up to ~2x between runs."""


def render(payload: dict) -> str:
    rows = []
    for r in payload["cases"]:
        tl_cell = f"{r['tensorly_seconds']:.3f}" + ("" if r["tensorly_calls"] == 3 else f" ({r['tensorly_calls']} run)")
        rows.append([r["tensor"], r["rank"], r["sweeps"], r["init"], tl_cell, f"{r['ours_float64_seconds']:.3f}",
                     f"{r['ours_float32_seconds']:.3f}", f"{r['speedup_float64']:.1f}x", f"{r['speedup_float32']:.1f}x",
                     f"{r['tensorly_error']:.4f}", f"{r['ours_float64_error']:.4f}", f"{r['ours_float32_error']:.4f}"])
    table = markdown_table(
        ["tensor", "rank", "sweeps", "init", "TensorLy s", "ours f64 s", "ours f32 s", "speed-up f64",
         "speed-up f32", "TensorLy error", "ours f64 error", "ours f32 error"], rows)
    variant_rows = [[str(tuple(v["shape"])), v["rank"], method, f"{ms:.1f}"]
                    for v in payload["mttkrp_variants"] for method, ms in v["ms_per_sweep"].items()]
    variant_table = markdown_table(["tensor", "rank", "MTTKRP method (float32, all modes of one sweep)", "ms"],
                                   variant_rows)
    speedups = [r["speedup_float64"] for r in payload["cases"]]
    summary = (f"Speed-up of cp_als (float64) over TensorLy {payload['tensorly']} parafac: "
               f"min {min(speedups):.1f}x, median {statistics.median(speedups):.0f}x, max {max(speedups):.0f}x "
               f"({payload['threads']} thread(s) each).\n")
    return ("# CP-ALS speed: tenfold vs TensorLy\n\n" + __doc__.split("Run:")[0].strip() + "\n\n" + summary
            + "\n" + table + "\n" + NOTES + "\n\n## MTTKRP variants\n\n" + variant_table)


def main() -> None:
    import json

    import tensorly

    from _common import RESULTS

    if "--render-only" in sys.argv:  # rebuild the Markdown from the last JSON
        payload = json.loads((RESULTS / "decompose_speed.json").read_text())
        payload.pop("environment", None)
        write_results("decompose_speed", payload, render(payload))
        return
    records = []
    for name, tensor, rank, sweeps in cases():
        for init in ("svd", "random"):
            t64, e64 = ours_run(tensor, rank, sweeps, init, torch.float64)
            t32, e32 = ours_run(tensor, rank, sweeps, init, torch.float32)
            tl_seconds, tl_error, tl_calls = tensorly_run(tensor, rank, sweeps, init)
            records.append({"tensor": name, "rank": rank, "sweeps": sweeps, "init": init,
                            "tensorly_seconds": tl_seconds, "tensorly_error": tl_error, "tensorly_calls": tl_calls,
                            "ours_float64_seconds": t64, "ours_float64_error": e64,
                            "ours_float32_seconds": t32, "ours_float32_error": e32,
                            "speedup_float64": tl_seconds / t64, "speedup_float32": tl_seconds / t32})
            print(records[-1], flush=True)
    variants = [{"shape": shape, "rank": rank, "ms_per_sweep": mttkrp_variants(shape, rank)} for shape, rank in RANDOM]
    payload = {"threads": THREADS, "tensorly": tensorly.__version__, "cases": records, "mttkrp_variants": variants}
    markdown = render(payload)
    write_results("decompose_speed", payload, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
