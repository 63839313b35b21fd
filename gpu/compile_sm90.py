"""The fused residual-quantization kernel compiled ahead of time for the H100/H200 (sm_90), on a CPU.

    python -m gpu.compile_sm90                      # TIGER's shape (D=32, L=3), every variant
    python -m gpu.compile_sm90 --json sm90.json     # also write the numbers

`triton.compile(ASTSource, target=GPUTarget("cuda", 90, 32))` runs Triton's whole CUDA pipeline
(TTIR, TTGIR, LLVM IR, PTX, then ptxas to a cubin) with no GPU, so a compile error or a register
blow-up shows before any GPU minute is spent. Variants: every autotune config of the kernel
(BLOCK_B, BLOCK_K, warps, stages) x tl.dot precision (tf32x3, the default on sm_80+; tf32;
ieee) for fp32 inputs, and the default precision for bf16. Per variant: registers per thread,
spill stores/loads and stack frame (ptxas's verbose report, run again on the PTX) and shared
memory (Triton's metadata). 255 registers is the hardware cap: a variant there, or spilling,
runs with fewer programs per SM or local-memory traffic. Exit status 1 if a variant fails to
compile; spills are reported, not fatal (the autotuner times every config on the GPU).

Needs the compiled kernel, not the interpreter: run without TRITON_INTERPRET=1.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRECISIONS = ("tf32x3", "tf32", "ieee")
REGISTER_CAP = 255  # per thread, sm_90


def ptxas_path(capability: int) -> str:
    """The ptxas Triton itself uses for this architecture."""
    from triton.backends.nvidia import compiler

    if hasattr(compiler, "get_ptxas"):
        return compiler.get_ptxas(capability).path
    return str(Path(compiler.__file__).parent / "bin" / "ptxas")


def ptxas_report(ptx: str, arch: str, ptxas: str) -> dict[str, int]:
    """registers, spill_stores, spill_loads, stack (bytes) from `ptxas -v` on the kernel's PTX."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        log = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", str(src), "-o", str(Path(tmp) / "kernel.cubin")],
                             capture_output=True, text=True, check=True).stderr
    return parse_ptxas_log(log)


def parse_ptxas_log(log: str) -> dict[str, int]:
    """The numbers of one entry function in a `ptxas -v` log."""
    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        if found is None:
            raise ValueError(f"no {pattern!r} in the ptxas log:\n{log}")
        return int(found.group(1))

    return {"registers": number(r"Used (\d+) registers"), "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads"), "stack": number(r"(\d+) bytes stack frame")}


def compile_variant(dtype: str, precision: str, config, dim: int, levels: int, capability: int, ptxas: str) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import sm_arch_from_capability
    from triton.compiler import ASTSource

    from ops.triton.residual_quantization import _residual_quantize_kernel

    pointer = {"fp32": "*fp32", "bf16": "*bf16"}[dtype]
    signature = {"z_ptr": pointer, "codebooks_ptr": pointer, "ids_ptr": "*i64", "codes_ptr": pointer,
                 "B": "i32", "D": "i32", "K": "i32", "L": "i32", "B_BUCKET": "i32"}
    # The launcher's meta-parameters for this shape (ops/triton/residual_quantization.py).
    constexprs = {"BLOCK_B": config.kwargs["BLOCK_B"], "BLOCK_D": max(16, triton.next_power_of_2(dim)),
                  "BLOCK_K": config.kwargs["BLOCK_K"], "BLOCK_L": triton.next_power_of_2(levels), "PRECISION": precision}
    signature.update({name: "constexpr" for name in constexprs})
    row = {"dtype": dtype, "precision": precision, "BLOCK_B": config.kwargs["BLOCK_B"], "BLOCK_K": config.kwargs["BLOCK_K"],
           "num_warps": config.num_warps, "num_stages": config.num_stages}
    start = time.perf_counter()
    try:
        kernel = triton.compile(ASTSource(fn=_residual_quantize_kernel, signature=signature, constexprs=constexprs),
                                target=GPUTarget("cuda", capability, 32),
                                options={"num_warps": config.num_warps, "num_stages": config.num_stages})
        row.update(ptxas_report(kernel.asm["ptx"], sm_arch_from_capability(capability), ptxas))
        row.update(shared=kernel.metadata.shared, cubin_bytes=len(kernel.asm["cubin"]), error=None)
    except Exception as e:  # noqa: BLE001  (every variant is reported; the exit status says if one failed)
        row.update(error=f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    row["compile_s"] = time.perf_counter() - start
    return row


def markdown(report: dict) -> str:
    lines = [f"# Fused residual quantization compiled for sm_{report['capability']} (ahead of time, no GPU)", "",
             f"triton {report['triton']}, torch {report['torch']}, ptxas `{report['ptxas_version']}`; "
             f"D={report['dim']} L={report['levels']} (BLOCK_D={report['block_d']}, BLOCK_L={report['block_l']}). "
             f"Registers per thread (cap {REGISTER_CAP}), spills and stack in bytes (ptxas -v), shared memory "
             "in bytes (Triton's metadata).", "",
             "| dtype | dots | BLOCK_B | BLOCK_K | warps | stages | registers | spill st/ld | stack | shared | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["rows"]:
        head = f"| {r['dtype']} | {r['precision']} | {r['BLOCK_B']} | {r['BLOCK_K']} | {r['num_warps']} | {r['num_stages']} |"
        if r["error"]:
            lines.append(f"{head} - | - | - | - | COMPILE ERROR: {r['error']} |")
            continue
        notes = [n for n, bad in (("at the register cap", r["registers"] >= REGISTER_CAP),
                                  ("spills", r["spill_stores"] + r["spill_loads"] > 0)) if bad]
        lines.append(f"{head} {r['registers']} | {r['spill_stores']}/{r['spill_loads']} | {r['stack']} | "
                     f"{r['shared']} | {', '.join(notes)} |")
    ok = [r for r in report["rows"] if not r["error"]]
    clean = [r for r in ok if r["spill_stores"] + r["spill_loads"] == 0]
    lines += ["", f"{len(ok)} of {len(report['rows'])} variants compiled; {len(clean)} without spills."]
    for dtype, precision in sorted({(r["dtype"], r["precision"]) for r in report["rows"]}):
        if not any(r["dtype"] == dtype and r["precision"] == precision for r in clean):
            lines.append(f"WARNING: every {dtype} {precision} config spills or failed: the autotuner has no clean choice.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capability", type=int, default=90, help="compute capability x 10 (H100/H200: 90)")
    parser.add_argument("--dim", type=int, default=32, help="latent dim D (TIGER: 32)")
    parser.add_argument("--levels", type=int, default=3, help="levels L (TIGER: 3)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32 dot precisions to compile")
    parser.add_argument("--configs", type=int, default=None, help="only the first N autotune configs (tests)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 variants")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    import triton

    import ops.triton.residual_quantization as rq

    if rq.INTERPRETED:
        raise SystemExit("TRITON_INTERPRET=1 turns the kernel into the CPU interpreter: unset it to compile for sm_90")
    configs = rq._GPU_CONFIGS[:args.configs]
    ptxas = ptxas_path(args.capability)
    variants = [("fp32", p) for p in args.precisions.split(",")] + ([] if args.no_bf16 else [("bf16", PRECISIONS[0])])
    rows = []
    for dtype, precision in variants:
        for config in configs:
            row = compile_variant(dtype, precision, config, args.dim, args.levels, args.capability, ptxas)
            print(f"{dtype} {precision} {row['BLOCK_B']}x{row['BLOCK_K']} w{row['num_warps']} s{row['num_stages']}: "
                  f"{row['error'] or str(row['registers']) + ' registers'} ({row['compile_s']:.1f} s)", file=sys.stderr)
            rows.append(row)
    version = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    report = {"capability": args.capability, "dim": args.dim, "levels": args.levels,
              "block_d": max(16, triton.next_power_of_2(args.dim)), "block_l": triton.next_power_of_2(args.levels),
              "triton": triton.__version__, "torch": torch.__version__, "ptxas_version": version[-1] if version else "?",
              "rows": rows}
    print(markdown(report), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if any(r["error"] for r in rows):
        raise SystemExit(f"{sum(bool(r['error']) for r in rows)} variant(s) failed to compile for sm_{args.capability}")
    return report


if __name__ == "__main__":
    main()
