"""An exponential moving average of a model's weights (Polyak averaging, Polyak & Juditsky 1992, with an
exponential window): the first step's weights, then averaged <- decay * averaged + (1 - decay) * weights after
every step. Training never reads it; train_decoder.py validates on it and best.pt holds it, so evaluate.py
reports the weights validation chose. Not torch's AveragedModel: its update copies a step counter from the
host to the device every step, which on CUDA waits for the GPU.
"""
from __future__ import annotations

import copy

import torch


class WeightAverage:
    """`module`: a frozen copy of `model` holding the average; `update(first)` after each optimiser step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay {decay!r}: must be in (0, 1)")
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self._pairs = (list(self.module.parameters()), list(model.parameters()))

    @torch.no_grad()
    def update(self, first: bool = False) -> None:
        """One fused update of every parameter; `first` (the run's first step) copies the weights exactly."""
        torch._foreach_lerp_(*self._pairs, 1.0 if first else 1 - self.decay)
