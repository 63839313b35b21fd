"""Stop a run whose loss became NaN or infinite, without a host sync every step.

`FirstNonFiniteStep` keeps, on the device, the first optimizer step whose loss was not
finite; the training loop reads it (one sync) only at log, evaluation and checkpoint
boundaries and at the end, always BEFORE writing a checkpoint, so the last checkpoint
on disk is always one from before the loss went bad.
"""
from __future__ import annotations

import torch
from torch import Tensor

from runtime.distributed import DistEnv, all_reduce_min
from runtime.errors import UserError

NEVER = torch.iinfo(torch.int64).max


class NonFiniteLossError(UserError, FloatingPointError):
    """The run diverged: the message names the step and the checkpoint that was kept."""


class FirstNonFiniteStep:
    def __init__(self, device: torch.device) -> None:
        self.first = torch.full((), NEVER, dtype=torch.int64, device=device)

    def update(self, loss: Tensor, step: int) -> None:
        """Record `step` (1-based count of optimizer steps, as in checkpoints) if `loss` is NaN/inf. No sync."""
        self.first = torch.where(torch.isfinite(loss.detach()), self.first, self.first.clamp(max=step))

    def check(self, env: DistEnv, checkpoint: str, last_saved_step: int | None) -> None:
        """Raise NonFiniteLossError if any rank saw a non-finite loss (a host sync: call at boundaries only)."""
        first = int(all_reduce_min(self.first, env))
        if first != NEVER:
            kept = (f"{checkpoint} (step {last_saved_step}) was kept unchanged" if last_saved_step is not None
                    else "no checkpoint had been written yet")
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite at step {first}; stopped before writing a checkpoint: "
                f"{kept}. Lower train.learning_rate, check the input features, or rerun to resume from it.")
