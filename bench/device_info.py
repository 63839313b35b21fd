"""What a benchmark ran on: the card (or CPU) and the torch / triton / CUDA versions.

    python -m bench.device_info [--device cuda|cpu]     # one line, for gpu/gpu_check.sh's summary

Every GPU result names these (issue 11): a number without its card and software is not comparable.
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch


def device_name(device: str) -> str:
    """'NVIDIA H100 80GB HBM3, 79 GiB, 132 SMs' on CUDA; 'CPU: <model>, N cores' otherwise."""
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs"
    cpuinfo = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), None) if cpuinfo.exists() else None
    return f"CPU: {model or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def software_versions() -> dict[str, str | None]:
    """python, torch, triton (None if absent) and the CUDA torch was built for (None: a CPU build)."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"python": platform.python_version(), "torch": torch.__version__, "triton": triton_version,
            "cuda": torch.version.cuda}


def describe(device: str) -> str:
    v = software_versions()
    return (f"{device_name(device)}; torch {v['torch']}, triton {v['triton'] or 'not installed'}, "
            f"CUDA {v['cuda'] or 'none (CPU build)'}, Python {v['python']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    print(describe(parser.parse_args().device))
