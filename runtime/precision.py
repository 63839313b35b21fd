"""One precision for training, validation and test evaluation (train.precision).

"auto": bf16 autocast on CUDA (matmuls in bf16, softmax and losses in fp32), fp32 elsewhere;
"bf16": bf16 autocast on any device (CPUs with AVX-512 BF16 / AMX run its matmuls natively);
"fp32": no autocast. The validation that picks best.pt and evaluate.py's test numbers use the
same context, so the checkpoint is chosen on exactly what is reported.
"""
from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def autocast(device: torch.device, precision: str = "auto") -> torch.autocast:
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r}: expected one of {PRECISIONS}")
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
