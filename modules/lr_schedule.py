"""The paper's learning-rate schedule (Sec. 4.1): constant for the first `warmup_steps`
steps, then inverse square-root decay, lr(step) = lr * sqrt(warmup_steps / step)."""
from __future__ import annotations

import math

import torch


def inverse_sqrt_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if step < warmup_steps else math.sqrt(warmup_steps / step))
