"""Stage 2's learning-rate schedule: a linear ramp from zero, then the paper's schedule (Sec. 4.1,
"a learning rate of 0.01 for the first 10k steps and then an inverse square root decay"), then
optionally a linear cooldown to zero over the run's last steps:

    lr(step) = lr * min(1, step / ramp_steps) * min(1, sqrt(constant_steps / step))
                  * min(1, (iterations - step) / cooldown_steps)

The ramp (0 = none) keeps Adam's first steps, taken with second-moment estimates from a handful
of batches, from throwing the freshly initialised embeddings around; the constant phase and the
decay are the paper's. The cooldown (0 = none; not the paper's) is the "decay to zero at the end" of
warmup-stable-decay schedules (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
Fixed Training Durations"): it is tied to `iterations`, so a run extended on resume cools down again
at its new end. `step` counts optimizer steps already taken (LambdaLR's convention: the first update
uses lr(0), so a ramp starts from lr / ramp_steps, never from zero, and the last update of a cooldown
uses lr / cooldown_steps).
"""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, ramp_steps: int, constant_steps: int, cooldown_steps: int = 0, iterations: int = 0) -> float:
    """The multiplier of the base learning rate before update number step + 1 (of `iterations`)."""
    ramp = min(1.0, (step + 1) / ramp_steps) if ramp_steps > 0 else 1.0
    decay = 1.0 if step < constant_steps else math.sqrt(constant_steps / step)
    cooldown = min(1.0, (iterations - step) / cooldown_steps) if cooldown_steps > 0 else 1.0
    return ramp * decay * cooldown


def ramp_then_inverse_sqrt(optimizer: torch.optim.Optimizer, ramp_steps: int, constant_steps: int,
                           cooldown_steps: int = 0, iterations: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    if ramp_steps < 0:
        raise ValueError(f"train.lr_ramp_steps={ramp_steps}: must be >= 0")
    if constant_steps < 1:
        raise ValueError(f"train.lr_constant_steps={constant_steps}: must be >= 1")
    if not 0 <= cooldown_steps <= iterations:
        raise ValueError(f"train.lr_cooldown_steps={cooldown_steps}: must be in [0, train.iterations = {iterations}]")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, ramp_steps, constant_steps, cooldown_steps, iterations))
