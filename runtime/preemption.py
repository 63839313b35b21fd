"""Stop cleanly when asked. SIGTERM (what Slurm, Kubernetes and other schedulers send before they
preempt or cancel a job) or Ctrl-C (SIGINT) sets a flag instead of killing the process; the training loop
reads it after every step, saves a checkpoint of the step it reached and returns. The same command then
continues from that checkpoint exactly (batches are a function of seed and step, and the checkpoint holds
the RNG, optimiser and scheduler states). A second signal of the same kind acts at once, as it would
without this: Ctrl-C twice means it.

With DDP every rank must stop at the same step, or the others would wait forever in the next collective:
there the flag is summed over ranks every CHECK_EVERY steps (one small all-reduce), and a rank that got the
signal keeps training until then.
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch
import torch.distributed as dist

CHECK_EVERY = 20  # steps between the DDP ranks' agreement on stopping (one process: every step)
EXIT_STATUS = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: 128 + signal.SIGINT}  # the shell's convention


class StopSignal:
    """`with StopSignal() as stop:` ... `if stop.requested(step, device): save; break`. Outside the main thread
    (where Python cannot install handlers) it never fires. The entry points' run_entry_point installs one
    around train(), which reads it with `current()`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second one: the usual behaviour
        print(f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint; rerun the same "
              "command to continue", file=sys.stderr, flush=True)

    def requested(self, step: int, device: torch.device) -> bool:
        """Whether to stop after `step`: on every rank alike (DDP: decided at multiples of CHECK_EVERY, where
        every rank calls this; `device` is the rank's, for the all-reduce)."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.signum is not None
        if step % CHECK_EVERY:
            return False
        flag = torch.tensor([0 if self.signum is None else 1], device=device)
        dist.all_reduce(flag)  # summed: any rank's signal stops them all
        return bool(flag.item())

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None


_CURRENT: list[StopSignal] = []


def current() -> StopSignal:
    """The StopSignal installed around this train() call, or one that never fires (train() called directly)."""
    return _CURRENT[-1] if _CURRENT else StopSignal()


class installed:
    """`with installed() as stop:` installs a StopSignal for the duration, visible to current()."""

    def __enter__(self) -> StopSignal:
        _CURRENT.append(StopSignal().__enter__())
        return _CURRENT[-1]

    def __exit__(self, *exc: object) -> None:
        _CURRENT.pop().__exit__(*exc)
