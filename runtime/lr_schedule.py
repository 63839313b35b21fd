"""Stage 2's learning-rate schedule: a linear ramp from zero, then the paper's schedule (Sec. 4.1,
"a learning rate of 0.01 for the first 10k steps and then an inverse square root decay"):

    lr(step) = lr * min(1, step / ramp_steps) * min(1, sqrt(constant_steps / step))

The ramp (0 = none) keeps Adam's first steps, taken with second-moment estimates from a handful
of batches, from throwing the freshly initialised embeddings around; the constant phase and the
decay are the paper's. `step` counts optimizer steps already taken (LambdaLR's convention: the first
update uses lr(0), so a ramp starts from lr / ramp_steps, never from zero).
"""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, ramp_steps: int, constant_steps: int) -> float:
    """The multiplier of the base learning rate before update number step + 1."""
    ramp = min(1.0, (step + 1) / ramp_steps) if ramp_steps > 0 else 1.0
    decay = 1.0 if step < constant_steps else math.sqrt(constant_steps / step)
    return ramp * decay


def ramp_then_inverse_sqrt(optimizer: torch.optim.Optimizer, ramp_steps: int,
                           constant_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if ramp_steps < 0:
        raise ValueError(f"train.lr_ramp_steps={ramp_steps}: must be >= 0")
    if constant_steps < 1:
        raise ValueError(f"train.lr_constant_steps={constant_steps}: must be >= 1")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, ramp_steps, constant_steps))
