"""One precision for training, validation and test evaluation.

bf16 autocast on CUDA (matmuls in bf16, softmax and losses in fp32), fp32 elsewhere. The
validation that picks best.pt and evaluate.py's test numbers use the same context, so the
checkpoint is chosen on exactly what is reported.
"""
from __future__ import annotations

import torch


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
