"""Benchmark residual quantization: fused Triton kernel vs eager reference vs torch.compile'd reference.

    python -m ops.bench                                   # GPU: B in {4k, 64k, 1M}, fp32 and bf16
    python -m ops.bench --json out.json                   # also write the numbers
    TRITON_INTERPRET=1 python -m ops.bench --sizes 64 --no-compile   # CPU smoke run (interpreter)

Prints a markdown table: milliseconds, achieved GB/s and % of the device's measured copy
bandwidth (a torch copy of a large tensor, bytes read + written). GB/s counts the bytes an
ideal implementation must move (read z and the codebooks, write ids and codes; fwd+bwd adds
reading grad_codes and ids and writing the codebook gradient), the same count for every
implementation, so GB/s compares them on one scale. Before timing, the fused ids are checked
against the reference (fraction of rows with identical ids in `ids_agree`).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Callable

import torch

from ops.residual_quantization import residual_quantize_reference

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGET = "B = 1M, fp32: fused forward >= 5x eager and >= 50% of copy bandwidth"


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, reps: int) -> float:
    """Median milliseconds per call. On CUDA Triton's do_bench (clears L2 between calls)."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=warmup, rep=reps * 10, return_mode="median"))
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def copy_bandwidth_gbps(device: torch.device, mib: int, warmup: int, reps: int) -> float:
    """Device copy bandwidth, bytes read + written per second, in GB/s."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup, reps)
    return 2 * src.numel() * 4 / ms / 1e6


def bytes_moved(B: int, D: int, K: int, L: int, dtype: torch.dtype, backward: bool) -> int:
    es = torch.finfo(dtype).bits // 8
    forward = B * D * es + L * K * D * es + B * L * 8 + B * L * D * es
    # Backward: read grad_codes and ids, write the codebook gradient.
    return forward + (B * L * D * es + B * L * 8 + L * K * D * es if backward else 0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="4096,65536,1048576", help="comma-separated batch sizes B")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from fp32,bf16")
    p.add_argument("--dim", type=int, default=32, help="latent dim D (TIGER: 32)")
    p.add_argument("--codebook-size", type=int, default=256, help="codes per level K (TIGER: 256)")
    p.add_argument("--levels", type=int, default=3, help="levels L (TIGER: 3)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd reference")
    p.add_argument("--warmup", type=int, default=10, help="CPU: warmup calls; CUDA: warmup ms for do_bench")
    p.add_argument("--reps", type=int, default=20, help="CPU: timed calls; CUDA: 10x this in ms for do_bench")
    p.add_argument("--copy-mib", type=int, default=None, help="copy-bandwidth tensor size (default 1024 CUDA, 64 CPU)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    # Import after argument parsing: the kernel module reads TRITON_INTERPRET when imported.
    import triton

    from ops.triton.residual_quantization import INTERPRETED, residual_quantize_forward, triton_residual_quantize

    if device.type == "cpu" and not INTERPRETED:
        raise SystemExit("the fused kernel runs on CPU only under TRITON_INTERPRET=1")
    D, K, L = args.dim, args.codebook_size, args.levels
    copy_mib = args.copy_mib or (1024 if device.type == "cuda" else 64)
    copy_gbps = copy_bandwidth_gbps(device, copy_mib, args.warmup, args.reps)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    compiled_reference = None if args.no_compile else torch.compile(residual_quantize_reference, dynamic=True)

    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        for B in [int(s) for s in args.sizes.split(",")]:
            g = torch.Generator().manual_seed(0)
            z = torch.randn(B, D, generator=g).to(device, dtype)
            codebooks = (torch.randn(L, K, D, generator=g) * (0.5 ** torch.arange(L)).view(L, 1, 1)).to(device, dtype)
            grad_codes = torch.randn(B, L, D, generator=g).to(device, dtype)
            ref_ids, _ = residual_quantize_reference(z, codebooks)

            impls: dict[str, Callable] = {"fused": triton_residual_quantize, "eager": residual_quantize_reference}
            if compiled_reference is not None:
                impls["compiled"] = compiled_reference
            # The kernel's distances in other tl.dot precisions, forward only, for comparison: plain TF32 is
            # faster but its ids drift from the fp32 reference at near-ties; IEEE fp32 skips tensor cores.
            if dtype == torch.float32 and device.type == "cuda":
                for precision in ("tf32", "ieee"):
                    impls[f"fused-{precision}"] = lambda z, cb, p=precision: residual_quantize_forward(z, cb, p)

            eager_ms = {}
            for mode, fn in impls.items():
                agree = None
                try:
                    with torch.no_grad():
                        ids, _ = fn(z, codebooks)
                    if mode.startswith("fused"):
                        agree = (ids == ref_ids).all(1).float().mean().item()
                except Exception as e:  # e.g. an inductor failure: keep the rest of the table
                    print(f"# {mode} {dtype_name} B={B} failed: {type(e).__name__}: {e}")
                    continue
                for backward in (False, True):
                    if backward and mode.startswith("fused-"):
                        continue
                    cb = codebooks.detach().requires_grad_(backward)

                    def run(fn=fn, cb=cb, backward=backward):
                        if not backward:
                            with torch.no_grad():
                                return fn(z, cb)
                        _, codes = fn(z, cb)
                        codes.backward(grad_codes)
                        cb.grad = None

                    ms = time_ms(run, device, args.warmup, args.reps)
                    pass_name = "fwd+bwd" if backward else "fwd"
                    if mode == "eager":
                        eager_ms[pass_name] = ms
                    nbytes = bytes_moved(B, D, K, L, dtype, backward)
                    gbps = nbytes / ms / 1e6
                    rows.append(dict(dtype=dtype_name, B=B, mode=mode, **{"pass": pass_name}, ms=ms, bytes=nbytes,
                                     gbps=gbps, pct_copy=100 * gbps / copy_gbps, ids_agree=agree))
            for r in rows:
                if r["dtype"] == dtype_name and r["B"] == B:
                    r["speedup_vs_eager"] = eager_ms[r["pass"]] / r["ms"] if r["pass"] in eager_ms else None

    report = dict(
        device=device_name, device_type=device.type, copy_gbps=copy_gbps, D=D, K=K, L=L,
        torch=torch.__version__, triton=triton.__version__, interpreted=INTERPRETED, rows=rows,
    )
    target = [r for r in rows if r["dtype"] == "fp32" and r["B"] == 1 << 20 and r["mode"] == "fused" and r["pass"] == "fwd"]
    if target:
        t = target[0]
        report["target_met"] = bool(t["speedup_vs_eager"] >= 5 and t["pct_copy"] >= 50)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


def format_table(report: dict) -> str:
    lines = [
        f"Residual quantization, D={report['D']} K={report['K']} L={report['L']} on {report['device']}"
        f" (torch {report['torch']}, triton {report['triton']}{', interpreter' if report['interpreted'] else ''});"
        f" measured copy bandwidth {report['copy_gbps']:.0f} GB/s",
        "",
        "| dtype | B | impl | pass | ms | GB/s | % copy BW | x eager | ids = reference |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        speedup = f"{r['speedup_vs_eager']:.3g}" if r.get("speedup_vs_eager") else "-"
        agree = f"{100 * r['ids_agree']:.2f}%" if r["ids_agree"] is not None else "-"
        lines.append(f"| {r['dtype']} | {r['B']} | {r['mode']} | {r['pass']} | {r['ms']:.3f} | {r['gbps']:.4g} |"
                     f" {r['pct_copy']:.3g} | {speedup} | {agree} |")
    if "target_met" in report:
        lines += ["", f"Target ({TARGET}): {'MET' if report['target_met'] else 'NOT MET'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
