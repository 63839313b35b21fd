"""torch.compile for the decoder's training forward (train.compile_model), with the workaround a GPU needed.

Seen on an H200 with torch 2.11.0+cu130 (studies/results/sweep_beauty_h200.md): the backward of the
length-trimmed batches' graph, compiled for a symbolic history length, failed at the second step in
inductor's "mix-order reduction" (two reductions of one tensor along both axes fused into one kernel, as
a LayerNorm's backward has). Its generated code slices the workspace of nsplit x rnumel partial sums
with the product unparenthesised: for nsplit = `16 + 64*s1`, rnumel 128 it wrote
`ws[0 * 16 + 64*s1 * 128 : (0 + 1) * 16 + 64*s1 * 128].view(16 + 64*s1, 128)`, a slice of 16 values
("shape '[1168, 128]' is invalid for input of size 16"). torch 2.13's inductor writes
`({nsplit}) * ({rnumel})`. Before 2.13 the fusion stays off: the two reductions run as separate
kernels, with the same results.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

FIXED_IN = (2, 13)  # the first torch seen to parenthesise the mix-order reduction's workspace slice


def mix_order_reduction_is_safe(torch_version: str) -> bool:
    """Whether this torch's inductor slices the mix-order reduction's workspace right for symbolic sizes."""
    match = re.match(r"(\d+)\.(\d+)", torch_version)
    if match is None:
        raise ValueError(f"torch version {torch_version!r}: expected it to start with <major>.<minor>")
    return (int(match.group(1)), int(match.group(2))) >= FIXED_IN


def compile_training_forward(model: torch.nn.Module, mode: str) -> Callable:
    """torch.compile(model, mode=mode); on torch < 2.13 first turns inductor's mix-order reduction off."""
    if not mix_order_reduction_is_safe(torch.__version__):
        import torch._inductor.config as inductor_config
        if hasattr(inductor_config.triton, "mix_order_reduction"):  # older versions have no such fusion
            inductor_config.triton.mix_order_reduction = False
    return torch.compile(model, mode=mode)
