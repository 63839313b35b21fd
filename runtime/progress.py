"""The training scripts' progress bar: tqdm, plus one early line when the run will take long.

The paper's decoder config on a CPU shows "1,324:00:00" in tqdm's corner and nothing else; a
newcomer should be told at the start. After the first step (start-up costs: k-means init,
compilation, caches) the bar times the next steps, until it has seen MIN_STEPS of them or
MIN_SECONDS went by, extrapolates to the steps left, and if that is LONG_RUN_SECONDS or more
writes one line with the estimate and what to do instead. Evaluation pauses come on top.
Drop-in for `tqdm.tqdm` (same arguments, `tqdm.write` included).
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm as plain_tqdm

LONG_RUN_SECONDS = 2 * 3600
MIN_STEPS, MIN_SECONDS = 20, 30.0


def device_description() -> str:
    import torch

    return f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "the CPU (no CUDA GPU found)"


def long_run_message(steps_left: int, seconds_per_step: float, measured_steps: int) -> str:
    hours = steps_left * seconds_per_step / 3600
    days = f" ({hours / 24:,.0f} days)" if hours >= 48 else ""
    return (f"note: the {steps_left:,} steps left are estimated to take {hours:,.1f} h{days} at {seconds_per_step:.2f} s/step "
            f"on {device_description()} (timed over {measured_steps} steps). On a CPU use a configs/*_cpu.gin or "
            f"*_smoke.gin config, or fewer train.iterations.")


class tqdm(plain_tqdm):
    clock = staticmethod(time.monotonic)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timed_from: tuple[int, float] | None = None  # (step, time) where timing started
        self._estimated = False

    def update(self, n: int = 1) -> bool | None:
        displayed = super().update(n)
        if self._estimated or self.disable or not self.total:
            return displayed
        now = self.clock()
        if self._timed_from is None:  # the first step carries the start-up costs: time from here
            self._timed_from = (self.n, now)
            return displayed
        steps, seconds = self.n - self._timed_from[0], now - self._timed_from[1]
        if steps >= MIN_STEPS or seconds >= MIN_SECONDS:
            self._estimated = True
            steps_left = self.total - self.n
            if steps_left * seconds / steps >= LONG_RUN_SECONDS:
                self.write(long_run_message(steps_left, seconds / steps, steps), file=sys.stderr)
        return displayed
