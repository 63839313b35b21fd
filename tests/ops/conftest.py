"""Run the Triton kernel under Triton's CPU interpreter when there is no GPU.

@triton.jit decides between compiling and interpreting when the kernel module is
imported, and the interpreter reads TRITON_INTERPRET again on its first launch, so
the variable is set here, before any test in tests/ops imports ops.triton, and left
set for the process. On a GPU machine it stays unset and the same tests run the
compiled kernel on CUDA tensors.
"""
import importlib
import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # Another test may have imported the kernel module earlier, compiled rather than interpreted.
    _module = sys.modules.get("ops.triton.residual_quantization")
    if _module is not None and os.environ["TRITON_INTERPRET"] == "1" and not _module.INTERPRETED:
        importlib.reload(_module)
