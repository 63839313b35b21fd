import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu import compile_sm90

# ptxas -v as Triton 3.6's ptxas printed it for one variant of the kernel.
PTXAS_LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_residual_quantize_kernel' for 'sm_90a'
ptxas info    : Function properties for _residual_quantize_kernel
    16 bytes stack frame, 24 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 16 bytes cumulative stack size
"""
REPO = Path(__file__).resolve().parents[1]


def test_ptxas_log_numbers():
    assert compile_sm90.parse_ptxas_log(PTXAS_LOG) == {"registers": 255, "spill_stores": 24, "spill_loads": 12, "stack": 16}
    with pytest.raises(ValueError, match="Used"):
        compile_sm90.parse_ptxas_log("ptxas info    : Compiling entry function 'k' for 'sm_90a'")


def test_table_flags_the_register_cap_spills_and_errors():
    row = dict(dtype="fp32", BLOCK_B=64, BLOCK_K=32, num_warps=4, num_stages=3, shared=32768, error=None)
    report = {"capability": 90, "dim": 32, "levels": 3, "block_d": 32, "block_l": 4, "triton": "3.6.0", "torch": "2.11.0",
              "ptxas_version": "12.8", "rows": [
                  {**row, "precision": "tf32x3", "registers": 248, "spill_stores": 0, "spill_loads": 0, "stack": 0},
                  {**row, "precision": "ieee", "registers": 255, "spill_stores": 68, "spill_loads": 64, "stack": 64},
                  {**row, "precision": "tf32", "error": "CompilationError: boom"}]}
    table = compile_sm90.markdown(report)
    assert "| fp32 | tf32x3 | 64 | 32 | 4 | 3 | 248 | 0/0 | 0 | 32768 |  |" in table
    assert "| fp32 | ieee | 64 | 32 | 4 | 3 | 255 | 68/64 | 64 | 32768 | at the register cap, spills |" in table
    assert "COMPILE ERROR: CompilationError: boom" in table
    assert "2 of 3 variants compiled; 1 without spills." in table
    assert "WARNING: every fp32 ieee config spills" in table and "WARNING: every fp32 tf32 config" in table
    assert "WARNING: every fp32 tf32x3" not in table


def test_refuses_the_interpreter():
    import ops.triton.residual_quantization as rq

    if not rq.INTERPRETED:
        pytest.skip("the kernel is compiled in this session (TRITON_INTERPRET unset)")
    with pytest.raises(SystemExit, match="TRITON_INTERPRET=1"):
        compile_sm90.main(["--configs", "1"])


def test_one_variant_compiles_for_sm90_on_the_cpu(tmp_path):
    """The real thing, for one autotune config: Triton's CUDA pipeline and ptxas, no GPU (its own process:
    this session's Triton may be the interpreter)."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "sm90.json"
    done = subprocess.run([sys.executable, "-m", "gpu.compile_sm90", "--configs", "1", "--precisions", "tf32x3",
                           "--no-bf16", "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["error"] is None and row["precision"] == "tf32x3" and row["dtype"] == "fp32"
    assert 0 < row["registers"] <= compile_sm90.REGISTER_CAP and row["shared"] > 0 and row["cubin_bytes"] > 0
    assert "1 of 1 variants compiled" in done.stdout
